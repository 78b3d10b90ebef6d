"""Predictors: one call from an RGB frame to a binary lane mask, whatever the model is.

`load_predictor` reads a checkpoint (float, PTQ or QAT; `perception.checkpoint`) or an
ONNX file written by ``quant/export.py`` and returns a `Predictor` whose `predict` maps an
HxWx3 uint8 RGB image to an HxW bool lane mask at the image's size. The closed loop and
evaluation use only this interface, so they know nothing of how a model was quantized or
which runtime runs it.

Runtimes:

- ``"torch"``: float checkpoints run eager or ``torch.compile``d with inductor freezing;
  int8 PTQ/QAT checkpoints (torchao PT2E, X86InductorQuantizer) are rebuilt from their
  metadata (`perception.quantized`) and compiled, which lowers them to oneDNN int8
  convolutions. Compiling happens once, for the fixed input shape, in `warmup`.
- ``"onnx"``: ONNX Runtime on a ``.onnx`` file from ``quant/export.py`` (float or int8
  QDQ; its `CheckpointMeta` is stored in the file), or on a float ``.pth`` exported on the
  fly (`perception.onnx_runtime`).
- ``"openvino"``: OpenVINO (CPU plugin, f32 precision hint) on the same files
  (`perception.openvino_runtime`; optional extra ``laneloop[openvino]``).
- ``"tensorrt"``: ONNX Runtime's TensorRT execution provider (NVIDIA GPU; needs
  onnxruntime-gpu built with TensorRT, optional extra ``laneloop[tensorrt]``) on the same
  files. Never an ``auto`` candidate.
- ``"auto"``: the fastest of these for the file on this machine, measured once and cached
  (`perception.runtime_select`); `Predictor.runtime` names the one chosen.

Per-frame work is kept lean: one fused scale/shift into a preallocated NCHW buffer, a
``torch.from_numpy`` view (no copy), the model, a threshold and (only when the image is
not the model's size) two ``cv2.resize`` calls.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from perception.checkpoint import (
    ROADLINE_TAG,
    CheckpointError,
    CheckpointMeta,
    load_checkpoint,
    model_from_state,
)
from perception.onnx_runtime import (  # re-exported: the ONNX path is part of the one loader
    ONNX_META_KEY,
    export_onnx_bytes,
    onnx_predictor,
    ort_session,
    read_onnx,
    read_onnx_meta,
)

#: `load_predictor`'s compile choice: "int8" compiles int8 graphs (their int8 kernels need it)
#: and runs float models eager, the exact reference numbers (what evaluation wants).
Compile = bool | Literal["int8"]

RUNTIMES = ("torch", "onnx", "openvino", "tensorrt")
#: `load_predictor` also takes runtime="auto": the fastest of RUNTIMES here (`perception.runtime_select`).
AUTO = "auto"
DEFAULT_INDUCTOR_CACHE = Path("~/.cache/laneloop/inductor")


@dataclass(frozen=True)
class Timing:
    """Wall-clock split of one `Predictor.predict_timed` call [ms] (perf_counter_ns)."""

    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms


def use_inductor_cache(path: str | os.PathLike[str] | None = None) -> Path:
    """Point TORCHINDUCTOR_CACHE_DIR at a laneloop folder unless the caller already set it.

    Inductor otherwise writes compiled kernels under /tmp; a project folder keeps them
    reusable between runs (the second start-up compiles much faster) and easy to delete.
    """
    if path is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(path).expanduser())
    else:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(DEFAULT_INDUCTOR_CACHE.expanduser()))
    cache = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def compile_frozen(model: torch.nn.Module | Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile`` with inductor freezing: weights become constants, so conv+BN fold
    and PT2E int8 patterns lower to oneDNN int8 kernels (the speed-up of QUANT.md).

    Sets the global ``torch._inductor.config.freezing``: passing it through
    ``torch.compile(options=...)`` fails on int8 graphs in torch 2.13 (the oneDNN weight
    prepack is then not constant-folded). Freezing only affects graphs compiled for
    inference (no autograd), so training compiles elsewhere are unaffected.
    """
    use_inductor_cache()
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return torch.compile(model)


class Predictor:
    """RGB frame -> lane mask, with pre/inference/post timing. Build with `load_predictor`.

    Attributes:
        meta: the checkpoint's metadata (`CheckpointMeta`).
        name: short display name (file stem, e.g. "unet_ptq").
        scheme: "float", "ptq" or "qat" (``meta.quant.scheme``).
        runtime: "torch", "onnx" or "openvino".
        input_size: (H, W) the model runs at; images of another size are resized.
        threads: intra-op threads the runtime uses.
    """

    def __init__(
        self,
        meta: CheckpointMeta,
        name: str,
        runtime: str,
        run: Callable[[np.ndarray], np.ndarray],
        input_size: tuple[int, int],
        threads: int,
        warmup_fn: Callable[[], None] | None = None,
        description: str = "",
        run_batch: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.meta = meta
        self.name = name
        self.runtime = runtime
        self.scheme: str = meta.quant.scheme
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.threads = threads
        self.description = description
        self._run = run
        self._run_batch = run_batch
        self._warmup_fn = warmup_fn
        self._warm = False
        h, w = self.input_size
        norm = meta.normalisation
        std = np.asarray(norm.std, np.float32)
        # (x / 255 - mean) / std == x * scale + shift, one multiply-add per pixel
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)
        self._shift = (-np.asarray(norm.mean, np.float32) / std).astype(np.float32)
        self._buf = np.empty((1, 3, h, w), np.float32)
        self._lane_channel = meta.task.lane_channel  # None: a multi-class model without lanes

    def __repr__(self) -> str:
        h, w = self.input_size
        return (
            f"Predictor({self.name!r}, scheme={self.scheme}, runtime={self.runtime}, "
            f"input={h}x{w}, threads={self.threads})"
        )

    def warmup(self, iterations: int = 3) -> None:
        """Compile (first call) and run a few frames at the fixed input shape, so the first
        real frame is not the slow one. Called automatically by the first `predict`."""
        if self._warmup_fn is not None and not self._warm:
            self._warmup_fn()
        h, w = self.input_size
        self._warm = True
        frame = np.zeros((h, w, 3), np.uint8)
        for _ in range(iterations):
            self.predict(frame)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> 1x3xhxw float32 normalised (a view of an internal buffer)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        h, w = self.input_size
        if rgb.shape[:2] != (h, w):
            shrink = h * w < rgb.shape[0] * rgb.shape[1]
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        buf = self._buf
        for c in range(3):
            np.multiply(rgb[:, :, c], self._scale[c], out=buf[0, c], casting="unsafe")
            buf[0, c] += self._shift[c]
        return buf

    def postprocess(self, logits: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """1xCxhxw logits -> HxW bool lane mask at the image's size."""
        if logits.shape[1] == 1:
            mask = logits[0, 0] > 0
        else:
            if self._lane_channel is None:
                raise CheckpointError(_no_lanes(self.meta))
            mask = logits[0].argmax(axis=0) == self._lane_channel
        if mask.shape != image_hw:
            small = mask.view(np.uint8)
            mask = cv2.resize(small, (image_hw[1], image_hw[0]), interpolation=cv2.INTER_NEAREST).view(bool)
        return mask

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> HxW bool lane mask (True = lane marking)."""
        if not self._warm:
            self.warmup()
        x = self.preprocess(rgb)
        return self.postprocess(self._run(x), rgb.shape[:2])

    def predict_timed(self, rgb: np.ndarray) -> tuple[np.ndarray, Timing]:
        """`predict` plus the wall-clock split (pre / inference / post) of this call."""
        if not self._warm:
            self.warmup()
        t0 = time.perf_counter_ns()
        x = self.preprocess(rgb)
        t1 = time.perf_counter_ns()
        logits = self._run(x)
        t2 = time.perf_counter_ns()
        mask = self.postprocess(logits, rgb.shape[:2])
        t3 = time.perf_counter_ns()
        return mask, Timing((t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6)

    def logits_batch(self, x: np.ndarray) -> np.ndarray:
        """Logits N x C x h x w of an already normalised N x 3 x h x w float32 batch (for
        evaluation over datasets that normalise frames themselves), as an array the caller
        owns. One call for runtimes that take any batch (eager torch), frame by frame for
        the graphs fixed at batch 1 (compiled, int8, ONNX); no warm-up."""
        x = np.ascontiguousarray(x, np.float32)
        if self._run_batch is not None:
            return self._run_batch(x)
        out: np.ndarray | None = None
        for i in range(len(x)):
            y = self._run(x[i : i + 1])  # may be the runtime's own buffer: copied out below
            if out is None:
                out = np.empty((len(x), *y.shape[1:]), y.dtype)
            out[i] = y[0]
        if out is None:
            raise ValueError("logits_batch needs at least one frame")
        return out

    def logits(self, rgb: np.ndarray) -> np.ndarray:
        """Raw 1xCxhxw float32 logits at the model's input size (for agreement checks)."""
        if not self._warm:
            self.warmup()
        return np.array(self._run(self.preprocess(rgb)), copy=True)


def _no_lanes(meta: CheckpointMeta) -> str:
    return (
        f"multi-class checkpoint predicts tags {list(meta.task.tags)} without RoadLine ({ROADLINE_TAG}); "
        "the predictor returns lane masks (use a checkpoint that has the RoadLine class)"
    )


def _torch_runner(module: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(x)).numpy()

    return run


def _check_size(meta: CheckpointMeta, input_size: tuple[int, int]) -> tuple[int, int]:
    h, w = int(input_size[0]), int(input_size[1])
    multiple = 2 ** int(meta.arch_kwargs.get("depth", 4)) if meta.arch == "unet" else 32
    if h <= 0 or w <= 0 or h % multiple or w % multiple:
        raise ValueError(f"input_size {h}x{w} (HxW) must be positive multiples of {multiple} for {meta.arch}")
    return h, w


def load_predictor(
    path: str | os.PathLike[str],
    runtime: str = "torch",
    threads: int | None = None,
    input_size: tuple[int, int] | None = None,
    compile: Compile = True,
) -> Predictor:
    """Load any laneloop model file into a `Predictor`: the one loader of the project,
    reading the file once.

    Args:
        path: a ``.pth`` checkpoint (float / ptq / qat) or, for ``runtime="onnx"`` or
            ``"openvino"``, an ``.onnx`` file from ``quant/export.py`` (a float ``.pth`` is
            exported on the fly).
        runtime: "torch", "onnx", "openvino", "tensorrt" (GPU), or "auto": time those that can run the file
            here and keep the fastest (cached; `perception.runtime_select`).
        threads: intra-op threads (default: all cores). Sets torch's global thread count
            for the torch runtime, the session's for ONNX Runtime.
        input_size: (H, W) the model runs at (default: the checkpoint's); frames of any
            size are resized to it and the mask back to the frame's size.
        compile: torch runtime only: ``torch.compile`` with freezing at `warmup` (int8
            models need it to run int8 kernels; without it they run the slow reference
            graph, which is still correct); "int8" compiles int8 models only and runs
            float ones eager (the reference numbers, one call per batch in `logits_batch`).

    Raises CheckpointError for a missing, corrupt or unusable file, ValueError for a bad
    runtime or input size.
    """
    if runtime not in RUNTIMES and runtime != AUTO:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {[*RUNTIMES, AUTO]}")
    path = Path(path)
    threads = int(threads) if threads else (os.cpu_count() or 1)
    if runtime == AUTO:
        from perception.runtime_select import auto_predictor

        return auto_predictor(path, threads, input_size, compile)
    if runtime == "onnx":
        return onnx_predictor(path, threads, input_size)
    if runtime == "tensorrt":
        return onnx_predictor(path, threads, input_size, tensorrt=True)
    if runtime == "openvino":
        from perception.openvino_runtime import openvino_predictor

        return openvino_predictor(path, threads, input_size)
    if path.suffix == ".onnx":
        raise CheckpointError(f"{path} is an ONNX file (load it with runtime='onnx' / --runtime onnx)")
    torch.set_num_threads(threads)
    state, meta = load_checkpoint(path)  # the one read of the file
    size = _check_size(meta, input_size or meta.input_size)
    scheme = meta.quant.scheme
    if scheme == "float":
        model = model_from_state(state, meta, path)
        if compile is not True:  # eager takes any batch size: one call per evaluation batch
            run = _torch_runner(model)
            return Predictor(meta, path.stem, "torch", run, size, threads, description="float eager", run_batch=run)
        module, desc = compile_frozen(model), "float compiled (inductor, freezing)"
    else:
        from perception import quantized

        gm = quantized.for_inference(quantized.quantized_from_state(state, meta, path, size))
        module, desc = gm, f"int8 {scheme} (PT2E reference, not compiled)"
        if compile:
            module, desc = compile_frozen(gm), f"int8 {scheme} (PT2E, inductor)"
    return Predictor(meta, path.stem, "torch", _torch_runner(module), size, threads, description=desc)


def module_predictor(module: torch.nn.Module, meta: CheckpointMeta, name: str = "in-memory") -> Predictor:
    """A `Predictor` over a model in memory (being trained or fine-tuned), so training and
    QAT score their val split with `perception.evaluation.evaluate` as files are scored.

    The module runs as it is (the caller sets eval mode), on any batch size, under
    ``no_grad`` (not inference mode: its tensors must stay usable by the next training step).
    """

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    size = (int(meta.input_size[0]), int(meta.input_size[1]))
    return Predictor(meta, name, "torch", run, size, torch.get_num_threads(), description="in memory", run_batch=run)


__all__ = [
    "AUTO",
    "ONNX_META_KEY",
    "RUNTIMES",
    "Predictor",
    "Timing",
    "compile_frozen",
    "export_onnx_bytes",
    "ort_session",
    "load_predictor",
    "module_predictor",
    "read_onnx",
    "read_onnx_meta",
    "use_inductor_cache",
]
