"""ONNX files and ONNX Runtime: what `load_predictor` runs for ``runtime="onnx"`` and
``"tensorrt"``, and what OpenVINO reads too (`onnx_source`).

A laneloop ``.onnx`` file carries its `CheckpointMeta` as JSON under `ONNX_META_KEY` in the
model's metadata (written by ``quant/export.py``), so a file alone says how to preprocess
and what it predicts; a float ``.pth`` is exported to ONNX bytes in memory on the fly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from perception.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, model_from_state

if TYPE_CHECKING:
    from perception.predictor import Predictor

ONNX_META_KEY = "laneloop.meta"


def export_onnx_bytes(model: torch.nn.Module, input_size: tuple[int, int]) -> bytes:
    """ONNX bytes of a float model at batch 1 and a fixed (H, W) (dynamo exporter, opset 18+)."""
    import warnings

    h, w = input_size
    example = torch.zeros(1, 3, h, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model.eval(), (example,), dynamo=True, verbose=False)
    return program.model_proto.SerializeToString()


TENSORRT_MISSING = (
    "TensorRT needs onnxruntime-gpu with TensorRT and an NVIDIA GPU "
    "(pip install onnxruntime-gpu; or use --runtime onnx/openvino)"
)


def ort_session(model: str | bytes, threads: int, tensorrt: bool = False, where: str | None = None) -> Any:
    """An ONNX Runtime CPU session with `threads` intra-op threads and full graph optimisation.

    int8 weights are fed as this CPU needs them (`perception.ort_int8`: shifted to uint8
    where the CPU has no VNNI, so ONNX Runtime's kernels do not saturate). With `tensorrt`,
    the TensorRT execution provider runs the graph (CUDA, then CPU, take what it cannot);
    CheckpointError(TENSORRT_MISSING) when this onnxruntime has no TensorRT provider.
    """
    import onnxruntime as ort

    from perception.ort_int8 import prepare_for_ort

    providers: list[Any] = ["CPUExecutionProvider"]
    if tensorrt:
        available = ort.get_available_providers()
        if "TensorrtExecutionProvider" not in available:
            raise CheckpointError(TENSORRT_MISSING)
        providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        providers = [p for p in providers if p in available]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No spin-waiting between calls: spinning threads keep the cores busy after each frame and
    # slow the simulator thread and the other models of a run (docs/runtimes.md measures it).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(
            model if tensorrt else prepare_for_ort(model), sess_options=opts, providers=providers
        )
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        where = where or (model if isinstance(model, str) else "the exported model")
        raise CheckpointError(f"ONNX Runtime cannot load {where}: {str(exc)[:300]} (re-export it)") from None
    if tensorrt and session.get_providers()[0] != "TensorrtExecutionProvider":
        raise CheckpointError(TENSORRT_MISSING)
    return session


def onnx_source(path: Path, input_size: tuple[int, int] | None, runtime: str) -> tuple[str | bytes, CheckpointMeta]:
    """What an ONNX-consuming runtime loads: the ``.onnx`` file (read once), or a float ``.pth``
    exported to ONNX bytes at `input_size`; with the model's metadata either way."""
    from perception.predictor import _check_size

    if path.suffix == ".onnx":
        return read_onnx(path)  # the one read of the file
    state, meta = load_checkpoint(path)
    if not meta.quant.is_float:
        raise CheckpointError(
            f"{path} is a {meta.quant.scheme} checkpoint; for {runtime} export an int8 model "
            "with: python quant/export.py --model FLOAT.pth --format onnx --int8 --data DIR"
        )
    model = model_from_state(state, meta, path)
    return export_onnx_bytes(model, _check_size(meta, input_size or meta.input_size)), meta


def onnx_predictor(path: Path, threads: int, input_size: tuple[int, int] | None, tensorrt: bool = False) -> Predictor:
    """`load_predictor` for ``runtime="onnx"`` (and ``"tensorrt"``)."""
    from perception.predictor import Predictor, _check_size

    source, meta = onnx_source(path, input_size, "ONNX Runtime")
    session = ort_session(source, threads, tensorrt, where=str(path))
    inp = session.get_inputs()[0]
    shape = inp.shape
    fixed = tuple(shape[2:4]) if all(isinstance(d, int) for d in shape[2:4]) else None
    size = _check_size(meta, input_size or fixed or meta.input_size)
    if fixed is not None and size != fixed:
        raise ValueError(
            f"{path} was exported for {fixed[0]}x{fixed[1]} (HxW) inputs, not {size[0]}x{size[1]} "
            "(re-export it with --input-size, or leave input_size unset)"
        )
    name = inp.name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    if tensorrt:
        kind = "float" if meta.quant.is_float else "int8 QDQ"
        return Predictor(meta, path.stem, "tensorrt", run, size, threads, description=f"{kind} ORT TensorRT EP")
    kind = "float"
    if not meta.quant.is_float:
        from perception.ort_int8 import weight_plan

        kind = f"int8 QDQ ({weight_plan().weights} weights)"
    return Predictor(meta, path.stem, "onnx", run, size, threads, description=f"{kind} ONNX Runtime")


def read_onnx(path: str | os.PathLike[str]) -> tuple[bytes | str, CheckpointMeta]:
    """An ``.onnx`` file read once: its bytes (what ONNX Runtime and OpenVINO are given)
    and its `CheckpointMeta`. A model whose weights lie in external files comes back as
    its path instead, for the runtime to resolve them next to it."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX file not found: {path} (check the path)")
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - onnx raises many types for a bad file
        raise CheckpointError(f"cannot read ONNX file {path}: {str(exc)[:200]} (re-export it)") from None
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    return (str(path) if external else data), _onnx_meta(model, path)


def read_onnx_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """The `CheckpointMeta` stored in an ONNX file's metadata by ``quant/export.py``."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises many types for a bad file
        raise CheckpointError(f"cannot read ONNX file {path}: {str(exc)[:200]} (re-export it)") from None
    return _onnx_meta(model, path)


def _onnx_meta(model: Any, path: str | os.PathLike[str]) -> CheckpointMeta:
    props = {p.key: p.value for p in model.metadata_props}
    if ONNX_META_KEY not in props:
        raise CheckpointError(f"{path} has no laneloop metadata (export it with quant/export.py)")
    try:
        return CheckpointMeta.from_dict(json.loads(props[ONNX_META_KEY]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has malformed laneloop metadata: {exc} (re-export it)") from None


__all__ = [
    "ONNX_META_KEY",
    "TENSORRT_MISSING",
    "export_onnx_bytes",
    "onnx_predictor",
    "onnx_source",
    "ort_session",
    "read_onnx",
    "read_onnx_meta",
]
