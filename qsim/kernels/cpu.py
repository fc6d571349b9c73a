"""Which integer-kernel backend this host runs: CPU features from LLVM, chosen once at import.

Backends, fastest first:

- ``avx512vnni``: 512-bit `vpdpbusd` (u8×s8 quads summed straight into int32 lanes, no
  int16 pair saturation) — needs AVX-512 F/BW/VL + VNNI;
- ``avxvnni``: the same instruction on 256-bit ymm registers (VEX-encoded AVX-VNNI);
- ``avx2``: the `vpmaddubsw`/`vpmaddwd` kernels of `qsim.kernels.madd8` / `madd16`;
- ``portable``: no hand-written vector kernels (exact float-BLAS blocks, the float32
  GEMV and the sequential kernels); any CPU, ARM included.

The features are LLVM's view of the host (`llvmlite.binding.get_host_cpu_features`), i.e.
what Numba compiles for; when `NUMBA_CPU_NAME` makes Numba target another CPU, or the host
is not x86-64, only ``portable`` is available. ``QSIM_KERNEL_BACKEND`` (one of the names
above, or ``auto``) forces a backend; asking for one the CPU lacks raises a `ValueError`
naming the missing features at import, so a kernel can never hit an illegal instruction.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

from numba import config as numba_config

BACKENDS = ("avx512vnni", "avxvnni", "avx2", "portable")
REQUIRES = {
    "avx512vnni": ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512vnni"),
    "avxvnni": ("avx2", "avxvnni"),
    "avx2": ("avx2",),
    "portable": (),
}
ENV = "QSIM_KERNEL_BACKEND"
_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avxvnni")


@lru_cache(maxsize=1)
def host_features() -> dict[str, bool]:
    """The CPU flags the kernels care about, as Numba's LLVM sees them for this host (all
    False off x86-64 or when `NUMBA_CPU_NAME` targets another CPU)."""
    feats = {f: False for f in _FLAGS}
    if platform.machine().lower() not in ("x86_64", "amd64") or numba_config.CPU_NAME:
        return feats
    try:
        from llvmlite import binding as llvm

        host = llvm.get_host_cpu_features()
    except (RuntimeError, ImportError):
        return feats
    for f in _FLAGS:
        feats[f] = bool(host.get(f, False))
    return feats


def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo where available) and LLVM's CPU name."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from llvmlite import binding as llvm

        return f"{name} ({llvm.get_host_cpu_name()})"
    except (RuntimeError, ImportError):
        return name


def available(feats: dict[str, bool] | None = None) -> tuple[str, ...]:
    """Backends this host can run, fastest first (always ends with "portable")."""
    feats = host_features() if feats is None else feats
    return tuple(b for b in BACKENDS if all(feats.get(f, False) for f in REQUIRES[b]))


def select_backend(requested: str | None, feats: dict[str, bool] | None = None) -> str:
    """The backend for a request ("auto"/None/"" = fastest available); ValueError when the
    name is unknown or the CPU lacks a feature it needs."""
    feats = host_features() if feats is None else feats
    avail = available(feats)
    req = (requested or "auto").strip().lower()
    if req == "auto":
        return avail[0]
    if req not in BACKENDS:
        raise ValueError(f"{ENV}={requested!r} is not a kernel backend; choose one of "
                         f"{', '.join(BACKENDS)} or auto")
    if req not in avail:
        missing = [f for f in REQUIRES[req] if not feats.get(f, False)]
        why = (f"Numba targets CPU {numba_config.CPU_NAME!r} (NUMBA_CPU_NAME), not this host"
               if numba_config.CPU_NAME else f"this CPU lacks {', '.join(missing)}")
        raise ValueError(f"{ENV}={req} cannot run here: {why}; available backends: {', '.join(avail)}")
    return req


_BACKEND = select_backend(os.environ.get(ENV))


def backend() -> str:
    """The integer-kernel backend in use: "avx512vnni", "avxvnni", "avx2" or "portable"."""
    return _BACKEND


def has_vnni() -> bool:
    """Whether the VNNI kernels (`qsim.kernels.vnni`) are in use."""
    return _BACKEND in ("avx512vnni", "avxvnni")


@lru_cache(maxsize=1)
def ort_pair_saturates() -> bool:
    """Whether ONNX Runtime's u8×s8 integer GEMM (MLAS) saturates adjacent int16 product
    pairs on this host: True only on x86-64 with AVX2 but neither AVX-512 VNNI nor AVX-VNNI
    (there MLAS uses `vpmaddubsw`; with VNNI it uses `vpdpbusd`, which sums the four u8×s8
    products of a quad exactly into int32). This models ORT's own CPU dispatch, so it
    follows the real CPU, not `QSIM_KERNEL_BACKEND`."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        from llvmlite import binding as llvm

        host = llvm.get_host_cpu_features()
    except (RuntimeError, ImportError):
        return False
    return bool(host.get("avx2", False)) and not (host.get("avx512vnni", False) or host.get("avxvnni", False))
