"""Int8 models of the torchao PT2E flow: building, packing into a checkpoint, rebuilding.

Why this shape: a converted PT2E model is an FX ``GraphModule`` that cannot be pickled
safely (and ``torch.save`` of a prepared QAT model fails outright), while a laneloop
checkpoint holds only tensors and plain data. The graph, however, is a deterministic
function of (float architecture, input size, quantizer settings, torch/torchao version).
So a quantized checkpoint stores:

- every tensor the converted graph reads (``get_attr``): int8 weights, their per-channel
  scales and zero points, float biases, under the graph's own attribute names;
- the activation quantization parameters, which PT2E bakes into the graph as Python
  scalars, as two tensors (``__act_scale__`` float64, ``__act_zero_point__`` int64) in
  graph order;
- in ``meta.quant.extra`` the recipe (observer, per-channel, QAT or not) and a
  fingerprint of the graph's structure.

Loading rebuilds the float model from the metadata (random weights), exports it, applies
the same prepare/convert, checks the fingerprint, then overwrites every tensor and
activation parameter: the result computes exactly what the saved model computed, and the
file holds int8 weights (about 4x smaller than float). No training data is needed.

The quantizer is torchao's X86InductorQuantizer (uint8 activations, int8 weights), whose
graphs ``torch.compile`` (inductor, freezing) lowers to oneDNN int8 convolutions.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from perception.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint
from perception.models import build_model

BACKEND = "x86_inductor"
GRAPH_FORMAT = "pt2e-x86-v1"
OBSERVERS = ("minmax", "histogram", "percentile")
ACT_SCALE_KEY = "__act_scale__"
ACT_ZP_KEY = "__act_zero_point__"
#: percentile observer: clip activations at this percentile of the calibration histogram
DEFAULT_PERCENTILE = 99.99


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence torchao's import-time chatter (CPU-less kernels) and export warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stderr(io.StringIO()):
            yield


def _pt2e() -> Any:
    with quiet():
        import torchao.quantization.pt2e as pt2e
        import torchao.quantization.pt2e.quantize_pt2e as qp
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    return pt2e, qp, x86


def _percentile_observer_cls() -> type:
    """HistogramObserver whose range is a percentile of the histogram, not the L2 search."""
    pt2e, _, _ = _pt2e()

    class PercentileObserver(pt2e.HistogramObserver):
        percentile: float = DEFAULT_PERCENTILE

        @torch.jit.export
        def calculate_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
            hist = self.histogram
            if hist.sum() == 0 or self.min_val.numel() == 0 or not torch.isfinite(self.max_val):
                return super().calculate_qparams()
            cdf = torch.cumsum(hist.double(), 0) / hist.sum().double()
            lo_q = (100.0 - self.percentile) / 100.0
            hi_q = self.percentile / 100.0
            edges = torch.linspace(float(self.min_val), float(self.max_val), hist.numel() + 1)
            lo_i = int(torch.searchsorted(cdf, torch.tensor(lo_q, dtype=torch.float64)))
            hi_i = int(torch.searchsorted(cdf, torch.tensor(hi_q, dtype=torch.float64)))
            lo = min(float(edges[lo_i]), 0.0) if float(self.min_val) < 0 else float(self.min_val)
            hi = float(edges[min(hi_i + 1, hist.numel())])
            return self._calculate_qparams(torch.tensor(lo), torch.tensor(hi))

    return PercentileObserver


def make_quantizer(observer: str = "histogram", per_channel: bool = True, qat: bool = False) -> Any:
    """X86InductorQuantizer with the chosen activation observer and weight granularity.

    PTQ: activations uint8 per-tensor affine observed by `observer`; weights int8
    symmetric, per output channel (default) or per tensor. QAT: torchao's default QAT
    config (moving-average fake quant), per-channel weights.
    """
    if observer not in OBSERVERS:
        raise ValueError(f"unknown observer {observer!r}; choose one of {list(OBSERVERS)}")
    pt2e, _, x86 = _pt2e()
    base = x86.get_default_x86_inductor_quantization_config(is_qat=qat)
    quantizer = x86.X86InductorQuantizer()
    if qat:
        return quantizer.set_global(base)
    act_cls = {
        "minmax": pt2e.MinMaxObserver,
        "histogram": pt2e.HistogramObserver,
        "percentile": _percentile_observer_cls(),
    }[observer]
    act = base.input_activation
    act = type(act)(
        dtype=act.dtype,
        quant_min=act.quant_min,
        quant_max=act.quant_max,
        qscheme=act.qscheme,
        is_dynamic=False,
        observer_or_fake_quant_ctr=act_cls.with_args(eps=2**-12),
    )
    weight = base.weight
    if not per_channel:
        weight = type(weight)(
            dtype=weight.dtype,
            quant_min=weight.quant_min,
            quant_max=weight.quant_max,
            qscheme=torch.per_tensor_symmetric,
            is_dynamic=False,
            observer_or_fake_quant_ctr=pt2e.MinMaxObserver.with_args(eps=2**-12),
        )
    config = type(base)(act, act, weight, base.bias, False)
    return quantizer.set_global(config)


def export_model(model: nn.Module, input_size: tuple[int, int]) -> torch.fx.GraphModule:
    """``torch.export`` at batch 1 and a fixed (H, W); the module keeps the model's mode."""
    h, w = input_size
    with quiet():
        return torch.export.export(model, (torch.zeros(1, 3, h, w),)).module()


def prepare(
    model: nn.Module, input_size: tuple[int, int], observer: str, per_channel: bool, qat: bool
) -> torch.fx.GraphModule:
    """Export `model` and insert observers (PTQ, model in eval) or fake quant (QAT, train)."""
    _, qp, _ = _pt2e()
    quantizer = make_quantizer(observer, per_channel, qat)
    if qat:
        model.train()
        with quiet():
            return qp.prepare_qat_pt2e(export_model(model, input_size), quantizer)
    model.eval()
    with quiet():
        return qp.prepare_pt2e(export_model(model, input_size), quantizer)


def convert(prepared: torch.fx.GraphModule, qat: bool) -> torch.fx.GraphModule:
    """Observed/fake-quantized graph -> int8 reference graph (q/dq ops, int8 weights)."""
    pt2e, qp, _ = _pt2e()
    if qat:
        pt2e.move_exported_model_to_eval(prepared)
    with quiet():
        return qp.convert_pt2e(prepared)


def _is_qdq_per_tensor(node: torch.fx.Node) -> bool:
    if node.op != "call_function":
        return False
    ops = torch.ops.quantized_decomposed
    return node.target in (ops.quantize_per_tensor.default, ops.dequantize_per_tensor.default)


def graph_fingerprint(gm: torch.fx.GraphModule) -> str:
    """Hash of the graph's structure (ops and attribute names, not the numbers)."""
    h = hashlib.sha256()
    for node in gm.graph.nodes:
        h.update(f"{node.op}|{node.target}|{len(node.args)};".encode())
    return h.hexdigest()[:16]


def pack_state(gm: torch.fx.GraphModule) -> dict[str, torch.Tensor]:
    """Every tensor the converted graph reads, plus its activation (scale, zero point)s."""
    state: dict[str, torch.Tensor] = {}
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value = _get_attr(gm, node.target)
            if isinstance(value, torch.Tensor):
                state[node.target] = _compact(value.detach().clone())
    scales, zps = [], []
    for node in gm.graph.nodes:
        if _is_qdq_per_tensor(node):
            scales.append(float(node.args[1]))
            zps.append(int(node.args[2]))
    state[ACT_SCALE_KEY] = torch.tensor(scales, dtype=torch.float64)
    state[ACT_ZP_KEY] = torch.tensor(zps, dtype=torch.int64)
    return state


def _compact(t: torch.Tensor) -> torch.Tensor:
    """int64 tensors (weight zero points: all 0 for symmetric int8) stored as int8 when exact."""
    if t.dtype == torch.int64 and (t.numel() == 0 or (int(t.min()) >= -128 and int(t.max()) <= 127)):
        return t.to(torch.int8)
    return t


def _get_attr(gm: nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _set_attr(gm: nn.Module, target: str, value: torch.Tensor) -> None:
    *parents, leaf = target.split(".")
    obj: Any = gm
    for part in parents:
        obj = getattr(obj, part)
    current = getattr(obj, leaf)
    if isinstance(current, nn.Parameter):
        setattr(obj, leaf, nn.Parameter(value, requires_grad=False))
    elif leaf in getattr(obj, "_buffers", {}):
        obj._buffers[leaf] = value
    else:
        setattr(obj, leaf, value)


def unpack_state(gm: torch.fx.GraphModule, state: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    """Inverse of `pack_state` on a freshly rebuilt graph of the same structure (in place)."""
    scales = state.get(ACT_SCALE_KEY)
    zps = state.get(ACT_ZP_KEY)
    if scales is None or zps is None:
        raise CheckpointError(f"{where}: no activation quantization parameters (re-create it with quant/ptq.py)")
    targets = [n.target for n in gm.graph.nodes if n.op == "get_attr"]
    expected = {t for t in targets if isinstance(_get_attr(gm, t), torch.Tensor)}
    stored = set(state) - {ACT_SCALE_KEY, ACT_ZP_KEY}
    if expected != stored:
        missing = sorted(expected - stored)[:3]
        extra = sorted(stored - expected)[:3]
        raise CheckpointError(
            f"{where}: int8 tensors do not match the rebuilt graph (missing {missing}, unexpected {extra}) "
            "(re-create the checkpoint with this laneloop/torch version)"
        )
    for target in expected:
        old = _get_attr(gm, target)
        new = state[target]
        if old.dtype == torch.int64 and new.dtype == torch.int8:
            new = new.to(torch.int64)  # see _compact
        if old.shape != new.shape or old.dtype != new.dtype:
            raise CheckpointError(
                f"{where}: tensor {target} is {new.dtype} {tuple(new.shape)} but the rebuilt graph "
                f"needs {old.dtype} {tuple(old.shape)} (re-create the checkpoint)"
            )
        _set_attr(gm, target, new.clone())
    qdq = [n for n in gm.graph.nodes if _is_qdq_per_tensor(n)]
    if len(qdq) != scales.numel() or len(qdq) != zps.numel():
        raise CheckpointError(
            f"{where}: {scales.numel()} activation parameters for {len(qdq)} quantize ops (re-create the checkpoint)"
        )
    for node, s, z in zip(qdq, scales.tolist(), zps.tolist(), strict=True):
        args = list(node.args)
        args[1], args[2] = float(s), int(z)
        node.args = tuple(args)
    gm.recompile()


#: ops inductor runs in float on dequantized input (it has no int8 bilinear upsample)
_FLOAT_ONLY_OPS = (torch.ops.aten.upsample_bilinear2d.vec, torch.ops.aten.upsample_bilinear2d.default)


def drop_requant_before_float_ops(gm: torch.fx.GraphModule) -> int:
    """Remove quantize->dequantize pairs whose only consumer runs in float anyway; returns how many.

    Why: QAT's conv-BN-ReLU pattern always fake-quantizes its output, so a QAT graph
    rounds each decoder block's output to uint8 right before the float bilinear upsample
    (PTQ graphs leave it float). Inductor then runs an int8-out convolution, a dequantize
    and the upsample as separate steps: measured 17.1 ms against 13.0 ms without the four
    pairs (w16, 160x320, 2 threads), mask agreement unchanged. Dropping them only removes
    a rounding step, so the result is as close to the float model or closer. The checkpoint
    keeps the graph as trained (ONNX Runtime fuses those convolutions better with it).
    """
    ops = torch.ops.quantized_decomposed
    removed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in _FLOAT_ONLY_OPS:
            continue
        dq = node.args[0]
        if not isinstance(dq, torch.fx.Node) or dq.target != ops.dequantize_per_tensor.default:
            continue
        q = dq.args[0]
        if not isinstance(q, torch.fx.Node) or q.target != ops.quantize_per_tensor.default:
            continue
        if len(dq.users) != 1 or len(q.users) != 1:
            continue
        node.replace_input_with(dq, q.args[0])
        gm.graph.erase_node(dq)
        gm.graph.erase_node(q)
        removed += 1
    if removed:
        gm.graph.lint()
        gm.recompile()
    return removed


def recipe(observer: str, per_channel: bool, qat: bool, input_size: tuple[int, int]) -> dict[str, Any]:
    """The plain-data part of ``meta.quant.extra`` that `rebuild` needs."""
    return {
        "format": GRAPH_FORMAT,
        "observer": observer,
        "per_channel": bool(per_channel),
        "qat": bool(qat),
        "export_size": [int(input_size[0]), int(input_size[1])],
        "torch": torch.__version__.split("+")[0],
    }


def rebuild(meta: CheckpointMeta, input_size: tuple[int, int] | None = None) -> torch.fx.GraphModule:
    """An uncalibrated converted graph with the structure `meta` describes (weights random)."""
    extra = meta.quant.extra
    if extra.get("format") != GRAPH_FORMAT:
        raise CheckpointError(
            f"quantized checkpoint format {extra.get('format')!r} is not {GRAPH_FORMAT!r} "
            "(re-create it with quant/ptq.py or quant/qat.py)"
        )
    size = tuple(input_size or extra.get("export_size") or meta.input_size)
    torch.manual_seed(0)  # deterministic placeholder weights (all overwritten)
    model = build_model(meta.arch, **meta.arch_kwargs)
    qat = bool(extra.get("qat", meta.quant.scheme == "qat"))
    prepared = prepare(model, size, extra.get("observer", "histogram"), bool(extra.get("per_channel", True)), qat)
    with torch.no_grad():
        prepared(torch.zeros(1, 3, size[0], size[1]))
    return convert(prepared, qat)


def load_quantized(
    path: str | os.PathLike[str], input_size: tuple[int, int] | None = None, expect_scheme: str | None = None
) -> torch.fx.GraphModule:
    """Rebuild the int8 graph of a ptq/qat checkpoint at `input_size` (default: saved size).

    Raises CheckpointError for a float checkpoint, a scheme other than `expect_scheme`,
    or tensors/graph that do not match (other torch version, edited file).
    """
    state, meta = load_checkpoint(path)
    if expect_scheme is not None and meta.quant.scheme not in ("float", expect_scheme):
        raise CheckpointError(f"{path} is a {meta.quant.scheme} checkpoint, expected {expect_scheme}")
    return quantized_from_state(state, meta, path, input_size)


def quantized_from_state(
    state: dict[str, torch.Tensor],
    meta: CheckpointMeta,
    path: str | os.PathLike[str],
    input_size: tuple[int, int] | None = None,
) -> torch.fx.GraphModule:
    """The int8 graph of an already read ptq/qat checkpoint (`load_quantized` after the
    read); `path` only names the file in errors."""
    if meta.quant.is_float:
        raise CheckpointError(f"{path} is a float checkpoint, not an int8 one (load it with build_from_checkpoint)")
    gm = rebuild(meta, input_size)
    want = meta.quant.extra.get("graph")
    if want and want != graph_fingerprint(gm):
        raise CheckpointError(
            f"{path}: its int8 graph was made by another torch/torchao version "
            f"({meta.quant.extra.get('torch')}, this is {torch.__version__}) "
            "(re-create it with quant/ptq.py or quant/qat.py from the float checkpoint)"
        )
    unpack_state(gm, state, where=str(Path(path)))
    return gm


def load_for_inference(path: str | os.PathLike[str], input_size: tuple[int, int] | None = None) -> torch.fx.GraphModule:
    """`load_quantized`, then the graph clean-up inductor needs to run it at full int8 speed."""
    return for_inference(load_quantized(path, input_size))


def for_inference(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The graph clean-up inductor needs to run an int8 graph at full int8 speed (in place)."""
    drop_requant_before_float_ops(gm)
    return gm


__all__ = [
    "BACKEND",
    "OBSERVERS",
    "convert",
    "drop_requant_before_float_ops",
    "export_model",
    "for_inference",
    "graph_fingerprint",
    "load_for_inference",
    "load_quantized",
    "make_quantizer",
    "pack_state",
    "prepare",
    "quantized_from_state",
    "rebuild",
    "recipe",
    "unpack_state",
]
