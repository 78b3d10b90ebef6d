"""Export a laneloop checkpoint to ONNX (float, or int8 QDQ) and check it in ONNX Runtime.

- float checkpoint: float ONNX (torch.onnx dynamo exporter).
- float checkpoint with ``--int8 --data DIR``: ONNX Runtime static quantization (QDQ,
  MinMax, per-channel int8 weights, uint8 activations) calibrated on recorded frames;
  ORT fuses it to QLinearConv. ``quant_pre_process`` is skipped on purpose: its symbolic
  shape inference fails on dynamo-exported graphs (QUANT.md).
- PTQ/QAT checkpoint: its PT2E int8 graph exported as QDQ ONNX (QAT graphs fuse best).

The checkpoint's metadata is stored in the ONNX file (``metadata_props["laneloop.meta"]``)
so `perception.predictor.load_predictor(path, runtime="onnx")` needs nothing else. Every
export is run in ONNX Runtime and compared with the torch model it came from.

int8 files keep int8 (s8) weights, the fast kind on VNNI CPUs; on CPUs without VNNI the
predictor shifts them to uint8 at load, which is exact and avoids ONNX Runtime's saturating
u8 x s8 kernels there (`perception.ort_int8`; the rule is recorded as ``quant.extra.ort_weights``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import dataclasses
import json
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dataset.format import DatasetError
from perception import quantized
from perception.checkpoint import CheckpointMeta, Quantization, build_from_checkpoint, load_checkpoint
from perception.metrics import frame_scores
from perception.onnx_runtime import ONNX_META_KEY, ort_session
from perception.ort_int8 import POLICY
from plumbing import atomic_output
from quant.common import (
    QuantError,
    add_common_args,
    binary_dataset_for,
    calibration_frames,
    check_output,
    command_line,
    file_digest,
    run_quant_cli,
    size_mb,
)


@dataclass
class ExportCheck:
    """ONNX Runtime vs torch on the same inputs."""

    frames: int
    max_abs_diff: float
    max_logit: float
    mask_iou: float  # IoU of the two lane masks, pooled over the frames

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _onnx_proto(module: torch.nn.Module, input_size: tuple[int, int]) -> Any:
    h, w = input_size
    with warnings.catch_warnings(), quantized.quiet():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (torch.zeros(1, 3, h, w),), dynamo=True, verbose=False)
    return program.model_proto


def _with_meta(proto: Any, meta: CheckpointMeta) -> Any:
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key = ONNX_META_KEY
    entry.value = json.dumps(meta.to_dict())
    return proto


def _save(proto: Any, path: Path) -> None:
    import onnx

    with atomic_output(path) as tmp:
        onnx.save(proto, str(tmp))


def _frames(
    meta: CheckpointMeta, data: str | Path | list[str] | None, n: int, split: str, seed: int
) -> Iterator[np.ndarray]:
    """Model-ready 1x3xHxW float32 inputs: recorded frames (of `split`, else of the next
    split the folders have: test, val, train), or seeded noise without --data."""
    if data is not None:
        order = [split] + [s for s in ("test", "val", "train") if s != split]
        for i, name in enumerate(order):
            try:
                ds = binary_dataset_for(meta, data, name)
            except DatasetError:
                if i == len(order) - 1:
                    raise
                continue
            for x in calibration_frames(ds, n):
                yield x.numpy()
            return
    rng = np.random.default_rng(seed)
    h, w = meta.input_size
    for _ in range(n):
        yield rng.standard_normal((1, 3, h, w), dtype=np.float32)


class _Reader:
    """onnxruntime CalibrationDataReader over recorded frames (duck-typed: get_next)."""

    def __init__(self, name: str, frames: Iterator[np.ndarray]) -> None:
        self._it = ({name: x} for x in frames)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def check_onnx(
    path_or_bytes: str | Path | bytes, reference: torch.nn.Module, inputs: list[np.ndarray], threads: int = 1
) -> ExportCheck:
    """Run the ONNX model in ONNX Runtime and compare logits and masks with `reference`."""
    session = ort_session(str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes, threads)
    name = session.get_inputs()[0].name
    diff, peak = 0.0, 0.0
    tp = fp = fn = 0
    for x in inputs:
        got = session.run(None, {name: x})[0]
        with torch.no_grad():
            want = reference(torch.from_numpy(x)).numpy()
        diff = max(diff, float(np.abs(got - want).max()))
        peak = max(peak, float(np.abs(want).max()))
        s = frame_scores(got[0, 0] > 0, want[0, 0] > 0)
        tp, fp, fn = tp + s.tp, fp + s.fp, fn + s.fn
    iou = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    return ExportCheck(len(inputs), diff, peak, iou)


def export_onnx(
    model_path: str | Path,
    out: str | Path,
    int8: bool = False,
    data: str | Path | list[str] | None = None,
    calib_frames: int = 100,
    check_frames: int = 8,
    seed: int = 0,
    overwrite: bool = False,
    input_size: tuple[int, int] | None = None,
) -> tuple[Path, CheckpointMeta, ExportCheck]:
    """Export `model_path` to `out` (see the module doc for the three cases) and check it.

    `input_size` (H, W) exports for another fixed input size than the checkpoint's.
    The check runs ORT on `check_frames` inputs (test frames of `data`, or seeded noise)
    against the torch model that was exported: the float model, or the PT2E int8
    reference graph. For ORT static quantization the reference is the float model, so the
    check measures quantization agreement, not export exactness.
    """
    out = check_output(out, overwrite)
    _, meta = load_checkpoint(model_path)
    if input_size is not None:  # export (and calibrate, and check) at another fixed size
        meta = dataclasses.replace(meta, input_size=(int(input_size[0]), int(input_size[1])))
    size = tuple(meta.input_size)
    scheme = meta.quant.scheme
    parent = {"path": str(model_path), "sha256_16": file_digest(model_path)}
    checks = list(_frames(meta, data, check_frames, "test", seed + 1))
    if scheme != "float":
        if int8:
            raise QuantError(f"{model_path} is already int8 ({scheme}); drop --int8 to export its int8 graph")
        reference: torch.nn.Module = quantized.load_quantized(model_path, input_size=size)
        proto = _onnx_proto(reference, size)
        out_meta = dataclasses.replace(
            meta,
            quant=dataclasses.replace(
                meta.quant,
                extra={**meta.quant.extra, "onnx": {"source": "pt2e", "parent": parent}, "ort_weights": POLICY},
            ),
            command=command_line(),
        )
        _save(_with_meta(proto, out_meta), out)
        return out, out_meta, check_onnx(out, reference, checks)
    model, _ = build_from_checkpoint(model_path)
    proto = _onnx_proto(model, size)
    if not int8:
        out_meta = dataclasses.replace(meta, command=command_line())
        _save(_with_meta(proto, out_meta), out)
        return out, out_meta, check_onnx(out, model, checks)
    if data is None:
        raise QuantError("--int8 needs --data DIR with recorded frames to calibrate on")
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="laneloop-onnx-") as tmp:
        float_path, int8_path = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        _save(proto, float_path)
        reader = _Reader(proto.graph.input[0].name, _frames(meta, data, calib_frames, "train", seed))
        with quantized.quiet():
            quantize_static(
                str(float_path),
                str(int8_path),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        int8_proto = onnx.load(str(int8_path))
    extra = {
        "format": "onnx-qdq",
        "tool": "onnxruntime.quantization.quantize_static",
        "observer": "minmax",
        "per_channel": True,
        "ort_weights": POLICY,
        "calibration": {**binary_dataset_for(meta, data, "train").identity(), "frames": calib_frames},
        "parent": parent,
    }
    out_meta = dataclasses.replace(
        meta,
        quant=Quantization("ptq", 8, "onnxruntime", extra),
        metrics={},
        command=command_line(),
    )
    _save(_with_meta(int8_proto, out_meta), out)
    return out, out_meta, check_onnx(out, model, checks)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quant/export.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python quant/export.py --model runs/unet_w16/best.pth --format onnx            # float\n"
        "  python quant/export.py --model runs/unet_w16/best.pth --format onnx --int8 --data data/town03\n"
        "  python quant/export.py --model models/unet_qat.pth --format onnx                # PT2E int8 graph",
    )
    parser.add_argument("--model", required=True, help="checkpoint (.pth): float, ptq or qat")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="export format (onnx)")
    parser.add_argument("--out", default=None, help="output file (default: next to --model, .onnx / _int8.onnx)")
    parser.add_argument("--int8", action="store_true", help="float model -> int8 QDQ with ORT static quantization")
    parser.add_argument(
        "--data",
        nargs="+",
        action="extend",
        default=None,
        help="recorded dataset folder(s): calibration (--int8), check frames",
    )
    parser.add_argument("--calib-frames", type=int, default=100, help="calibration frames for --int8 (default 100)")
    parser.add_argument("--check-frames", type=int, default=8, help="frames compared in ORT vs torch (default 8)")
    parser.add_argument("--min-mask-iou", type=float, default=0.99, help="fail below this ORT/torch mask IoU")
    parser.add_argument("--input-size", default=None, help="HxW fixed input size (default: the checkpoint's)")
    add_common_args(parser)
    return parser


def _main(args: argparse.Namespace) -> int:
    model = Path(args.model)
    out = Path(args.out) if args.out else model.with_name(model.stem + ("_int8" if args.int8 else "") + ".onnx")
    size = None
    if args.input_size:
        try:
            size = tuple(int(v) for v in args.input_size.lower().split("x"))
        except ValueError:
            raise QuantError(f"--input-size must be HxW like 160x320, got {args.input_size!r}") from None
    path, meta, check = export_onnx(
        model, out, args.int8, args.data, args.calib_frames, args.check_frames, args.seed, args.overwrite, size
    )
    kind = "float" if meta.quant.is_float else "int8 QDQ"
    print(
        f"wrote {path}: {kind} ONNX, {size_mb(path):.2f} MB; ONNX Runtime vs torch on {check.frames} frames: "
        f"max |logit diff| {check.max_abs_diff:.2e} (logits up to {check.max_logit:.1f}), mask IoU {check.mask_iou:.4f}"
    )
    if check.mask_iou < args.min_mask_iou:
        hint = (
            "check the calibration data"
            if args.data
            else "it was checked on noise: pass --data DIR to check it on recorded frames"
        )
        raise QuantError(
            f"ONNX Runtime masks agree with torch only at IoU {check.mask_iou:.4f} < {args.min_mask_iou} "
            f"({path} kept for inspection; {hint})"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    return run_quant_cli(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
