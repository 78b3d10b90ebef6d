"""CPU class detection and the int8 weight rule that follows from it (pure: no model, no runtime)."""

from __future__ import annotations

from perception.cpu import parse_cpuinfo, reconcile
from perception.ort_int8 import weight_plan

EPYC_MILAN = "model name\t: AMD EPYC 7V13 64-Core Processor\nflags\t\t: fpu sse2 avx fma avx2 bmi2 sha_ni\n"
SAPPHIRE = (
    "model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: avx2 fma avx512f avx512bw avx512_vnni avx_vnni amx_int8\n"
)


def test_classes_and_weight_plan() -> None:
    milan, spr = parse_cpuinfo(EPYC_MILAN, cores=2), parse_cpuinfo(SAPPHIRE, cores=2)
    assert milan.model.startswith("AMD EPYC") and milan.cores == 2
    assert (milan.cpu_class, milan.vnni) == ("avx2", False) and (spr.cpu_class, spr.vnni) == ("amx", True)
    assert weight_plan(milan, env="").weights == "u8" and weight_plan(spr, env="").weights == "s8"
    assert weight_plan(spr, env="u8").weights == "u8" and weight_plan(milan, env="S8").weights == "s8"
    assert "class avx2" in milan.describe() and "avx512_vnni" in spr.describe()
    assert milan.signature() != spr.signature() and milan.signature() == parse_cpuinfo(EPYC_MILAN, 2).signature()


def test_cpuid_wins_over_proc_cpuinfo_when_they_disagree() -> None:
    spr = parse_cpuinfo(SAPPHIRE, cores=2)
    host_cpuid = {"AVX2": True, "FMA3": True, "AVX512F": True, "AVX512BW": True, "AVX512VNNI": True}
    assert reconcile(spr, host_cpuid) == spr  # agree: /proc/cpuinfo kept as it is
    emulated = reconcile(spr, {"AVX2": True, "FMA3": True, "AVX512F": False, "AVX512VNNI": False})
    assert emulated.cpu_class == "avx2" and not emulated.vnni and "emulated" in emulated.model
    assert weight_plan(emulated, env="").weights == "u8"
    assert reconcile(spr, {}) == spr  # no probe: /proc/cpuinfo alone
