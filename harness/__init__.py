"""The closed-loop harness: runs lane models in a simulated world and judges what they see and drive.

Homes: `harness.loop` (episodes, frame by frame), `harness.contracts` (what the loop needs of
models and scorers, its configuration and results), `harness.track` and `harness.meter` (one
model's state and its lane keeping), `harness.runlog` (the crash-safe frame log),
`harness.summary`, `harness.strip` and `harness.report` (what a run tells), `harness.view`
(the pygame live view) and `harness.drivers` (lane estimator and controllers that steer on a
mask). The world itself is `sim`: the harness uses only its public interface
(`sim.make_backend`, `sim.types`, `sim.tags`, `sim.camera`, `sim.vehicle`), never a
backend's internals, and never imports torch (models are injected).
"""
