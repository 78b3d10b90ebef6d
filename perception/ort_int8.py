"""int8 ONNX files that ONNX Runtime runs right on every x86 CPU class.

ONNX Runtime's u8 x s8 convolution kernels (QLinearConv, fused from our QDQ graphs) use
VPMADDUBSW on CPUs without VNNI: it adds pairs of u8*s8 products into a *saturating* int16,
so large activations times large weights clip and the logits drift (measured: lane-mask
agreement with float 0.970-0.989 instead of 0.996-0.998 on AVX2-only CPUs). With VNNI
(VPDPBUSD, 32-bit accumulator) nothing saturates.

The cure is exact, not an approximation: an int8 weight w with zero point z dequantizes to
the same value as the uint8 weight w + 128 with zero point z + 128, and ONNX Runtime runs
u8 x u8 convolutions without the saturating instruction. So files stay int8 (the fast kind
on VNNI CPUs, where u8 x u8 is about 3x slower) and the predictor shifts the weights to
uint8 in memory when the CPU has no VNNI. `weight_plan` makes that choice, once, from the
CPU's flags; ``LANELOOP_ORT_INT8_WEIGHTS=s8|u8`` overrides it (tests, A/B measurements).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from perception.cpu import CpuInfo, cpu_info

#: Environment variable that forces the weight type ("s8" or "u8"; anything else: auto).
ENV = "LANELOOP_ORT_INT8_WEIGHTS"
#: What quant/export.py records in the file's metadata (``quant.extra.ort_weights``).
POLICY = "int8 weights in the file; shifted to uint8 (w+128, zero point+128: exact) at load on CPUs without VNNI"


@dataclass(frozen=True)
class WeightPlan:
    """How an int8 ONNX file's weights are fed to ONNX Runtime on this CPU, and why."""

    weights: str  # "s8" (as stored) or "u8" (shifted at load)
    reason: str


def weight_plan(cpu: CpuInfo | None = None, env: str | None = None) -> WeightPlan:
    """s8 where the CPU has VNNI (fast and exact), u8 where it has not (exact, no saturation)."""
    forced = (os.environ.get(ENV, "") if env is None else env).strip().lower()
    if forced in ("s8", "u8"):
        return WeightPlan(forced, f"forced by {ENV}={forced}")
    cpu = cpu or cpu_info()
    if cpu.vnni or not cpu.flags:  # no flags known (not x86 Linux): keep the file as it is
        return WeightPlan("s8", f"CPU class {cpu.cpu_class}: int8 dot products do not saturate")
    return WeightPlan("u8", f"CPU class {cpu.cpu_class} has no VNNI: u8 x s8 kernels saturate, u8 x u8 do not")


def _int8_weight_dequantizers(proto: Any) -> tuple[dict[str, Any], list[Any]]:
    import onnx

    inits = {t.name: t for t in proto.graph.initializer}
    nodes = [
        n
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].data_type == onnx.TensorProto.INT8
    ]
    return inits, nodes


def count_int8_weights(proto: Any) -> int:
    """Number of int8 weight tensors (initializers read by a DequantizeLinear) in `proto`."""
    return len(_int8_weight_dequantizers(proto)[1])


def shift_weights_to_uint8(proto: Any) -> int:
    """Rewrite every int8 weight initializer of a QDQ graph (and its zero point) as uint8 + 128,
    in place; returns how many weights it shifted. The dequantized values are unchanged, so the
    graph computes the same function; ONNX Runtime then picks its non-saturating u8 x u8 kernels.
    """
    from onnx import numpy_helper

    inits, nodes = _int8_weight_dequantizers(proto)
    renamed: dict[str, str] = {}
    for node in nodes:
        for slot in (0, 2):  # x and x_zero_point (scale, slot 1, is float and stays)
            if slot >= len(node.input) or not node.input[slot]:
                continue
            name = node.input[slot]
            if name not in renamed:
                shifted = numpy_helper.to_array(inits[name]).astype(np.int16) + 128
                tensor = numpy_helper.from_array(shifted.astype(np.uint8), f"{name}__u8")
                proto.graph.initializer.append(tensor)
                renamed[name] = tensor.name
            node.input[slot] = renamed[name]
        if len(node.input) < 3 or not node.input[2]:  # no zero point given: int8 default 0 -> uint8 128
            zp_name = f"{node.name or node.output[0]}__zp_u8"
            scale = inits.get(node.input[1])
            shape = tuple(scale.dims) if scale is not None else ()
            proto.graph.initializer.append(numpy_helper.from_array(np.full(shape, 128, np.uint8), zp_name))
            while len(node.input) < 3:
                node.input.append("")
            node.input[2] = zp_name
    still_used = {i for n in proto.graph.node for i in n.input}
    keep = [t for t in proto.graph.initializer if t.name not in renamed or t.name in still_used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    return len(nodes)


def prepare_for_ort(model: str | bytes, plan: WeightPlan | None = None) -> str | bytes:
    """The model to hand to ONNX Runtime on this CPU.

    With the s8 plan (VNNI CPUs) the model goes through untouched (a path stays a path, so
    ONNX Runtime reads it itself); with the u8 plan an int8 graph comes back as the bytes of
    the shifted graph (a float graph, having no int8 weights, comes back as it was).
    """
    import onnx

    plan = plan or weight_plan()
    if plan.weights == "s8":
        return model
    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(model)
    return proto.SerializeToString() if shift_weights_to_uint8(proto) else model


__all__ = [
    "ENV",
    "POLICY",
    "WeightPlan",
    "count_int8_weights",
    "prepare_for_ort",
    "shift_weights_to_uint8",
    "weight_plan",
]
