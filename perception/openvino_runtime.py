"""OpenVINO runtime for `perception.predictor`: a ``.onnx`` file from ``quant/export.py``
(float or int8 QDQ; its `CheckpointMeta` is read from the file's metadata) or a float
``.pth`` exported to ONNX on the fly.

Compiled for the CPU plugin with a latency hint and ``INFERENCE_PRECISION_HINT=f32``: on
CPUs with AMX (and AVX-512 BF16) OpenVINO otherwise runs float models in bf16, which
changes the masks. The hint only concerns float layers: int8 QDQ graphs still run int8
kernels (the QDQ pairs are folded into int8 convolutions by the plugin's LPT passes).

One `InferRequest` is reused for every frame; its output tensor is returned as a numpy
view (no copy), like ONNX Runtime's output array, valid until the next call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perception.checkpoint import CheckpointError

MISSING = "OpenVINO is not installed (pip install 'laneloop[openvino]' or use --runtime onnx)"


def _core() -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise CheckpointError(MISSING) from None
    return ov.Core()


def compile_config(threads: int) -> dict[str, Any]:
    """CPU plugin properties: `threads` inference threads, latency hint, f32 precision."""
    return {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


def openvino_predictor(path: str | Path, threads: int, input_size: tuple[int, int] | None = None) -> Any:
    """`Predictor` running OpenVINO (CPU) on `path` (.onnx float/int8 QDQ, or a float .pth).

    Raises CheckpointError (one line) for a missing or corrupt file, a non-float .pth, or
    when OpenVINO is not installed; ValueError for an input size the file was not exported for.
    """
    from perception.onnx_runtime import onnx_source
    from perception.predictor import Predictor, _check_size

    path = Path(path)
    core = _core()
    source, meta = onnx_source(path, input_size, "OpenVINO")
    try:
        model = core.read_model(source) if isinstance(source, str) else core.read_model(model=source, weights=b"")
    except Exception as exc:  # noqa: BLE001 - openvino raises its own exception types
        raise CheckpointError(f"OpenVINO cannot read {path}: {_short(exc)} (re-export it)") from None
    shape = model.input(0).get_partial_shape()
    fixed = None
    if shape.rank.is_static and len(shape) == 4 and shape[2].is_static and shape[3].is_static:
        fixed = (shape[2].get_length(), shape[3].get_length())
    size = _check_size(meta, input_size or fixed or meta.input_size)
    if fixed is not None and size != fixed:
        raise ValueError(
            f"{path} was exported for {fixed[0]}x{fixed[1]} (HxW) inputs, not {size[0]}x{size[1]} "
            "(re-export it with --input-size, or leave input_size unset)"
        )
    if fixed is None:
        model.reshape([1, 3, size[0], size[1]])
    try:
        compiled = core.compile_model(model, "CPU", compile_config(threads))
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"OpenVINO cannot compile {path}: {_short(exc)}") from None
    req = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        req.infer({0: x})
        return req.get_output_tensor(0).data

    kind = "float" if meta.quant.is_float else "int8 QDQ"
    desc = f"{kind} OpenVINO CPU (f32 precision hint, latency)"
    return Predictor(meta, path.stem, "openvino", run, size, threads, description=desc)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


__all__ = ["MISSING", "compile_config", "openvino_predictor"]
