"""Perception: segmentation models, the checkpoint format, and lane metrics.

One path for a model: `checkpoint` (the file format, with the typed `metadata`) ->
`predictor.load_predictor` (the one loader, any runtime) -> `Predictor`, which the closed
loop calls per frame and `evaluation.evaluate` scores on recorded datasets (for training,
QAT, quant/compare.py and train/evaluate.py alike) with the one IoU of `metrics`.

This package knows nothing of the simulator (`sim`): it sees images and masks only.
"""
