"""Measure this machine and describe it as a `cpu_simd` hardware profile.

Datasheet peaks say little about what an optimized runtime reaches on a given host
(shared cores, VMs, AVX2 vs VNNI code paths), so the host profile is *measured*:

* int8 GEMM through onnxruntime `MatMulInteger` (u8 activations × s8 weights held as
  initializers, so MLAS pre-packs them), one thread and all usable cores;
* fp32 GEMM through NumPy's BLAS, one thread (and all cores when threadpoolctl can
  set the BLAS pool);
* memory bandwidth: a streaming copy of arrays much larger than the last-level cache
  (STREAM convention: read + written bytes), and a Numba read loop over an array that
  fits each cache level;
* cache sizes from /sys (or lscpu), core count, clock (lscpu max MHz, else
  /proc/cpuinfo; a 1 GHz placeholder when neither says — rates are then per 1 GHz
  pseudo-cycle and predicted seconds are unaffected), SIMD flags.

Instruction rates are *effective* MACs per cycle per core (measured rate / clock) and
`compute_efficiency` is 1, so predicted compute time reproduces the measurement. What
was measured, when, and which numbers are assumptions (node, energies) is recorded in
the profile's `validation` and `notes`.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy as np
from numba import njit


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
              "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve")
CALIBRATION_SIZES = (192, 384, 768, 1536)  # square GEMMs, deliberately not the benchmark's 256..2048
CALIBRATION_SIZES_QUICK = (192, 256)
DRAM_KIND_ASSUMED = "DDR4"  # a server/desktop host's memory kind is not readable without root tools: assumed


# --- machine facts ------------------------------------------------------------------------
def _cpuinfo() -> dict[str, str]:
    """First processor block of /proc/cpuinfo (empty off Linux)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                if info:
                    break
                continue
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out.splitlines()) if v}


def _size_bytes(text: str) -> int | None:
    """'32K', '512 KiB', '32 MiB (1 instance)' → bytes."""
    m = re.match(r"\s*([\d.]+)\s*([KMG]?)i?B?", text)
    if not m:
        return None
    return int(float(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)])


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def clock_hz(cpuinfo: dict, lscpu: dict) -> tuple[float | None, str]:
    """Nominal clock and where it came from; (None, reason) when unknown."""
    for key in ("CPU max MHz", "CPU MHz"):
        if key in lscpu:
            try:
                return float(lscpu[key]) * 1e6, f"lscpu '{key}'"
            except ValueError:
                pass
    if "cpu MHz" in cpuinfo:
        return float(cpuinfo["cpu MHz"]) * 1e6, "/proc/cpuinfo 'cpu MHz'"
    return None, "unknown (neither lscpu nor /proc/cpuinfo report a clock)"


def cache_levels(cores: int, lscpu: dict) -> list[dict]:
    """Data/unified caches of cpu0: level, size per instance, instances (cores sharing it)."""
    levels = []
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            if kind == "Instruction":
                continue
            level = int((index / "level").read_text())
            size = _size_bytes((index / "size").read_text())
            shared = (index / "shared_cpu_list").read_text().strip()
        except (OSError, ValueError):
            continue
        sharers = sum(int(b) - int(a) + 1 if b else 1
                      for a, _, b in (part.partition("-") for part in shared.split(",") if part))
        if size:
            levels.append({"level": level, "size": size, "instances": max(1, cores // max(sharers, 1))})
    if levels:
        return levels
    for level, key in ((1, "L1d cache"), (2, "L2 cache"), (3, "L3 cache")):  # lscpu totals
        if key in lscpu and (total := _size_bytes(lscpu[key])):
            m = re.search(r"\((\d+) instance", lscpu[key])
            n = int(m.group(1)) if m else 1
            levels.append({"level": level, "size": total // n, "instances": min(n, cores) or 1})
    return levels


def simd_flags(cpuinfo: dict) -> list[str]:
    flags = set((cpuinfo.get("flags") or cpuinfo.get("Features") or "").split())
    return [f for f in SIMD_FLAGS if f in flags]


# --- measurements -------------------------------------------------------------------------
def _best_seconds(fn, reps: int, budget_s: float, cpu_time: bool = True) -> float:
    """Fastest of `reps` calls (at least 2, stopping early past `budget_s` wall) after one warm-up.

    Single-threaded work runs on the calling thread, so its CPU time (`time.thread_time`)
    is what the work costs on a core of its own — robust on a shared, oversubscribed host
    where wall time also counts waiting for the core. Multi-threaded runs use wall time.
    """
    timer = time.thread_time if cpu_time else time.perf_counter
    fn()
    best, start = float("inf"), time.perf_counter()
    for i in range(max(reps, 2)):
        t0 = timer()
        fn()
        best = min(best, timer() - t0)
        if i >= 1 and time.perf_counter() - start > budget_s:
            break
    return best


def ort_int8_gemm_session(m: int, n: int, k: int, threads: int, seed: int = 0):
    """An onnxruntime session computing A(u8, M×K) · B(s8 initializer, K×N) → int32, and its input."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    b = rng.integers(-64, 64, size=(k, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "int8_gemm",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
        initializer=[numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    return sess, {"A": a}


def ort_int8_gemm_seconds(m: int, n: int, k: int, threads: int = 1, reps: int = 5, budget_s: float = 2.0) -> float:
    """Best seconds of one int8 GEMM through onnxruntime MatMulInteger (CPU time when threads == 1)."""
    sess, feed = ort_int8_gemm_session(m, n, k, threads)
    return _best_seconds(lambda: sess.run(None, feed), reps, budget_s, cpu_time=threads == 1)


def _blas_limits(threads: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return None
    return threadpool_limits(limits=threads, user_api="blas")


def numpy_fp32_gemm_seconds(size: int, threads: int = 1, reps: int = 5, budget_s: float = 2.0) -> tuple[float, bool]:
    """Best seconds of a size³ fp32 GEMM through NumPy's BLAS; second value: thread count enforced."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    limits = _blas_limits(threads)
    try:
        return _best_seconds(lambda: np.matmul(a, b, out=out), reps, budget_s, threads == 1), limits is not None
    finally:
        if limits is not None:
            limits.restore_original_limits()


def stream_copy_bytes_per_s(nbytes: int, reps: int = 5, budget_s: float = 2.0) -> float:
    """STREAM-style copy bandwidth (read + written bytes per second) over `nbytes` arrays."""
    src = np.ones(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    secs = _best_seconds(lambda: np.copyto(dst, src), reps, budget_s)
    return 2.0 * src.nbytes / secs


@njit(fastmath=True, nogil=True, cache=True)
def _read_reps(a, reps):
    """Sum a float32 array `reps` times: in-cache read bandwidth without Python call overhead."""
    total = 0.0
    for _ in range(reps):
        s = np.float32(0.0)
        for i in range(a.size):
            s += a[i]
        total += s
    return total


def cache_read_bytes_per_s(nbytes: int, target_s: float = 0.02) -> float:
    """Read bandwidth of one core over a float32 array of `nbytes` (sized to sit in a cache level)."""
    kernel = _read_reps
    a = np.ones(max(nbytes // 4, 64), dtype=np.float32)
    kernel(a, 1)
    reps = max(1, int(target_s * 20e9 / a.nbytes))  # aim near target_s at ~20 GB/s
    secs = _best_seconds(lambda: kernel(a, reps), 3, 4 * target_s)
    return reps * a.nbytes / secs


def minimax_rate(rates: list[float]) -> float:
    """sqrt(min · max): the one rate whose largest |log(rate_i / rate)| over `rates` is smallest."""
    return float(np.sqrt(min(rates) * max(rates)))


# --- the profile --------------------------------------------------------------------------
def _int8_path(flags: list[str]) -> str:
    for flag, name in (("amx_int8", "amx tdpbusd"), ("avx512_vnni", "avx512_vnni vpdpbusd"),
                       ("avx_vnni", "avx_vnni vpdpbusd"), ("avx512bw", "avx512bw vpmaddubsw"),
                       ("avx2", "avx2 vpmaddubsw"), ("i8mm", "i8mm smmla"), ("asimddp", "neon sdot")):
        if flag in flags:
            return name
    return "scalar/sse int8"


def _vector_bits(flags: list[str]) -> int:
    if "avx512f" in flags:
        return 512
    return 256 if ("avx2" in flags or "avx" in flags) else 128


def calibrate_host(quick: bool = False, name: str = "calibrated-host", technology_nm: float = 7.0) -> dict:
    """Measure this machine; return a `cpu_simd` profile dict that `validate_profile_dict` accepts.

    `quick=True` uses small problems and short timings (a few seconds, for tests); the
    numbers are then rough. `technology_nm` cannot be measured and is recorded as assumed.
    """
    cpuinfo, lscpu = _cpuinfo(), _lscpu()
    cores = usable_cores()
    clock, clock_source = clock_hz(cpuinfo, lscpu)
    clock_known = clock is not None
    clock = clock if clock_known else 1e9
    flags = simd_flags(cpuinfo)
    caches = cache_levels(cores, lscpu)
    # MLAS/BLAS speed falls as operands outgrow the caches, which a flat per-cycle rate cannot
    # follow; the geometric mean of the extreme rates is the flat rate with the smallest worst
    # relative error over the calibration sizes.
    sizes = CALIBRATION_SIZES_QUICK if quick else CALIBRATION_SIZES
    reps, budget = (3, 0.3) if quick else (7, 3.0)
    int8_rates = [n**3 / ort_int8_gemm_seconds(n, n, n, 1, reps, budget) for n in sizes]
    int8_1 = minimax_rate(int8_rates)
    mid = sizes[len(sizes) // 2]
    int8_all = mid**3 / ort_int8_gemm_seconds(mid, mid, mid, cores, reps, budget) if cores > 1 else int8_1
    fp32_rates, fp32_enforced = [], True
    for n in sizes:
        secs, enforced = numpy_fp32_gemm_seconds(n, 1, reps, budget)
        fp32_rates.append(n**3 / secs)
        fp32_enforced &= enforced
    fp32_1 = minimax_rate(fp32_rates)
    llc = max((c["size"] for c in caches), default=32 * 2**20)
    copy_bytes = min(max(2 * llc, 16 * 2**20), 64 * 2**20) if quick else min(max(4 * llc, 64 * 2**20), 256 * 2**20)
    dram_bw = stream_copy_bytes_per_s(copy_bytes, reps, budget)

    memory, cache_bw = [], {}
    for c in caches:
        bw = cache_read_bytes_per_s(c["size"] // 4, 0.005 if quick else 0.05)
        cache_bw[f"L{c['level']}"] = round(bw / 1e9, 2)
        memory.append({
            "name": f"L{c['level']}", "capacity": c["size"], "instances": c["instances"],
            "bandwidth_bytes_per_cycle": round(bw / clock, 3),
        })
    int8_path = _int8_path(flags)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    model_name = cpuinfo.get("model name") or lscpu.get("Model name") or platform.processor() or "unknown CPU"
    validation = {
        "measured_utc": when,
        "host": {"cpu": model_name, "usable_cores": cores, "clock_hz": clock if clock_known else None,
                 "clock_source": clock_source, "simd_flags": flags, "quick": quick},
        "timing": "best of repeats; single-thread runs by CPU time of the calling thread, all-core by wall time; "
                  "single_thread_macs_per_s = sqrt(min * max) of the per-size rates",
        "int8_gemm": {"runtime": _ort_version(), "op": "MatMulInteger u8 x s8 (weights as initializers)",
                      "square_sizes": list(sizes), "macs_per_s_by_size": [round(r) for r in int8_rates],
                      "single_thread_macs_per_s": round(int8_1), "all_cores_macs_per_s": round(int8_all),
                      "all_cores_size": mid, "all_cores_threads": cores},
        "fp32_gemm": {"runtime": f"numpy {np.__version__} BLAS", "square_sizes": list(sizes),
                      "macs_per_s_by_size": [round(r) for r in fp32_rates],
                      "single_thread_macs_per_s": round(fp32_1), "thread_count_enforced": fp32_enforced},
        "dram_stream_copy_bytes_per_s": round(dram_bw), "stream_copy_array_bytes": copy_bytes,
        "cache_read_gb_per_s": cache_bw,
        "assumed_not_measured": {"technology_nm": technology_nm, "dram_kind": DRAM_KIND_ASSUMED,
                                 "energies": "qsim.hw.tech tables: CACTI-fit caches, DRAM pJ/bit of the kind, "
                                             "Stillmaker & Baas node scaling",
                                 "static_power_w": 0.0},
    }
    notes = (f"Calibrated on {model_name} at {when}{' (quick: rough numbers)' if quick else ''}. "
             f"int8 = onnxruntime MatMulInteger, one thread, minimax over {list(sizes)}^3 ({int8_1 / 1e9:.1f} GMAC/s); "
             f"fp32 = NumPy BLAS, same sizes ({fp32_1 / 1e9:.1f} GMAC/s); DRAM = streaming copy of {copy_bytes >> 20} MiB "
             f"({dram_bw / 1e9:.1f} GB/s read+write). Clock: {clock_source}"
             f"{'' if clock_known else '; rates are per 1 GHz pseudo-cycle'}. Node and energies are assumed.")
    return {
        "name": name,
        "family": "cpu_simd",
        "description": f"This host ({model_name}, {cores} usable cores), measured by `qsim profiles calibrate-host`",
        "clock": clock,
        "technology_nm": technology_nm,
        "memory": memory,
        "dram": {"kind": DRAM_KIND_ASSUMED, "bandwidth": round(dram_bw)},
        "cpu_simd": {
            "cores": cores,
            "vector_bits": _vector_bits(flags),
            "instructions": [
                {"name": f"{int8_path} (onnxruntime MLAS, measured)", "precision": "int8",
                 "macs_per_cycle_per_core": round(int8_1 / clock, 3)},
                {"name": "fp32 fma (NumPy BLAS, measured)", "precision": "fp32",
                 "macs_per_cycle_per_core": round(fp32_1 / clock, 3)},
            ],
        },
        "validation": validation,
        "notes": notes,
    }


def _ort_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"
