"""The CPU a figure was measured on: model name, the SIMD class that decides int8 speed, and a
signature that keys per-machine caches.

int8 kernels differ by CPU class far more than float ones: with AVX-512 VNNI (or AVX-VNNI)
a u8 x s8 dot product is one instruction with a 32-bit accumulator; on AVX2 alone ONNX
Runtime uses VPMADDUBSW, whose 16-bit intermediate sums can saturate (quant/export.py picks
the weight range for that). Every benchmark prints `describe()` beside its figures.
"""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass
from functools import cache

#: Flags (as /proc/cpuinfo spells them) that matter for our kernels, in the order we print them.
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says of this machine's CPU."""

    model: str
    cores: int
    flags: frozenset[str]

    @property
    def vnni(self) -> bool:
        """True when int8 dot products have a VNNI instruction (AVX-512 VNNI or AVX-VNNI)."""
        return "avx512_vnni" in self.flags or "avx_vnni" in self.flags

    @property
    def cpu_class(self) -> str:
        """Short class name used beside every figure: amx, avx512-vnni, avx-vnni, avx512, avx2 or generic."""
        if "amx_int8" in self.flags:
            return "amx"
        if "avx512_vnni" in self.flags:
            return "avx512-vnni"
        if "avx_vnni" in self.flags:
            return "avx-vnni"
        if "avx512f" in self.flags:
            return "avx512"
        if "avx2" in self.flags:
            return "avx2"
        return "generic"

    def describe(self) -> str:
        """One line for a report: model, cores, class and the flags we care about."""
        present = [f for f in FLAGS if f in self.flags]
        return f"{self.model}, {self.cores} cores, class {self.cpu_class} (flags: {' '.join(present) or 'none'})"

    def signature(self) -> str:
        """A short stable key for caches that are only valid on the same kind of CPU."""
        text = "|".join([platform.machine(), self.model, str(self.cores), *sorted(f for f in FLAGS if f in self.flags)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_cpuinfo(text: str, cores: int | None = None) -> CpuInfo:
    """CpuInfo from the text of /proc/cpuinfo (first processor's model name and flags)."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model or platform.processor() or platform.machine(), cores or os.cpu_count() or 1, flags)


#: /proc/cpuinfo flag -> the name numpy's own CPUID probe gives it.
_NUMPY_NAMES = {
    "avx2": "AVX2",
    "fma": "FMA3",
    "avx512f": "AVX512F",
    "avx512bw": "AVX512BW",
    "avx512_vnni": "AVX512VNNI",
    "avx512_bf16": "AVX512BF16",
}


def reconcile(info: CpuInfo, cpuid: dict[str, bool]) -> CpuInfo:
    """Trust the CPUID probe of this process over /proc/cpuinfo where they disagree.

    They disagree under an emulator (qemu-user shows the host's /proc/cpuinfo while the
    process sees the emulated CPU's CPUID); then the flags CPUID cannot confirm (avx_vnni,
    amx_*) are dropped too, so int8 choices err on the side that is always exact.
    """
    if not cpuid or not info.flags:
        return info
    seen = {flag: bool(cpuid[name]) for flag, name in _NUMPY_NAMES.items() if name in cpuid}
    if all((flag in info.flags) == present for flag, present in seen.items()):
        return info
    kept = {f for f in info.flags if f not in _NUMPY_NAMES and f not in ("avx_vnni", "amx_int8", "amx_bf16")}
    kept |= {flag for flag, present in seen.items() if present}
    return CpuInfo(f"{info.model} (emulated: flags from CPUID)", info.cores, frozenset(kept))


def _numpy_cpuid() -> dict[str, bool]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2 keeps it elsewhere; without it /proc/cpuinfo is used alone
        try:
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return {}
    return dict(__cpu_features__)


@cache
def cpu_info() -> CpuInfo:
    """This process's CpuInfo (read once): /proc/cpuinfo, checked against CPUID."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    return reconcile(parse_cpuinfo(text), _numpy_cpuid())


def describe() -> str:
    """`cpu_info().describe()`: the line every benchmark prints."""
    return cpu_info().describe()


__all__ = ["FLAGS", "CpuInfo", "cpu_info", "describe", "parse_cpuinfo", "reconcile"]
