"""The machine a run is on: one line describing it (for every results file), thread limits, malloc.

Every figure the project writes names the CPU model, the instruction-set flags that decide which
kernels torch runs (avx2, avx512f, avx512_bf16, amx_bf16), torch's thread count and the versions.
"""

from __future__ import annotations

import ctypes
import functools
import getpass
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import threadpoolctl

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


@functools.cache
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, feature flags) from `lscpu` (else /proc/cpuinfo, else what platform knows)."""
    model, flags = "", ""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model name", "model name") and not model:
            model = value.strip()
        elif key.strip() in ("Flags", "flags") and not flags:
            flags = value
    return model or platform.processor() or platform.machine(), frozenset(flags.split())


def cpu_model() -> str:
    return cpu_info()[0]


def describe(device: str = "cpu") -> str:
    """'Intel Xeon ..., 2 cores (avx2, avx512f, amx_bf16), torch 2.x, 2 torch threads, Python 3.11'."""
    import torch

    model, flags = cpu_info()
    isa = ", ".join(f for f in ISA_FLAGS if f in flags) or "none of " + "/".join(ISA_FLAGS)
    text = (f"{model}, {os.cpu_count()} cores ({isa}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}")
    for name in ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS"):  # an emulated ISA
        if os.environ.get(name):
            text += f", {name}={os.environ[name]}"
    if str(device).startswith("cuda") and torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


@functools.cache
def code_version(root: Path | None = None) -> str:
    """The git commit of this checkout ('abc1234', '+dirty' when tracked files outside results/ differ from
    it: a run's own results are not code), or 'unknown'; read once per process, so a long run keeps the
    version it started with."""
    root = root or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) if commit else "unknown"


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags with fast bfloat16 products
CAPPED_ENV = ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA")


def fast_bf16_cpu(flags: frozenset[str] | None = None, env: dict[str, str] | None = None) -> tuple[bool, str]:
    """(whether this CPU multiplies bfloat16 fast, why): the avx512_bf16 or amx_bf16 flag, and no
    environment variable capping torch/oneDNN below them (AVX2 emulation)."""
    flags = cpu_info()[1] if flags is None else flags
    env = dict(os.environ) if env is None else env
    have = [f for f in BF16_FLAGS if f in flags]
    if not have:
        return False, f"no {' or '.join(BF16_FLAGS)} on this CPU"
    for name in CAPPED_ENV:
        value = env.get(name, "").upper()
        ok = value.startswith("AVX512") if name == "ATEN_CPU_CAPABILITY" else any(
            s in value for s in ("BF16", "AMX", "FP16", "ALL", "AVX10"))  # oneDNN's ISA names
        if value and not ok:
            return False, f"{name}={env[name]} caps the kernels below {'/'.join(have)}"
    return True, f"{'/'.join(have)} on this CPU"


def one_blas_thread() -> threadpoolctl.threadpool_limits:
    """One BLAS thread (inside a `with`, or from now on): scipy's L-BFGS-B works on long vectors with
    small BLAS calls that are slower with BLAS threads starting and spinning beside torch's."""
    return threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def limit_threads(torch_threads: int) -> None:
    """Torch threads for this process (at least one), and one BLAS thread for good."""
    import torch

    torch.set_num_threads(max(1, torch_threads))
    one_blas_thread()


# glibc malloc: blocks below this come from the heap (32 MB is its largest setting) ...
MALLOC_MMAP_THRESHOLD_BYTES = 32 * 2**20
# ... and up to this much freed heap is kept for reuse instead of going back to the OS
MALLOC_TRIM_THRESHOLD_BYTES = 256 * 2**20


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc's malloc keep a step's freed temporaries for the next step; True where applied.

    By default glibc unmaps (or trims) freed blocks of a few MB, such as the temporaries of every
    loss evaluation, and the next evaluation page-faults them back in (benchmark/bench_step.py
    --system-malloc measures the difference). The same as setting MALLOC_MMAP_THRESHOLD_
    and MALLOC_TRIM_THRESHOLD_ in the environment, or preloading jemalloc. Process-wide, once; Linux
    with glibc only (elsewhere nothing changes).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD_BYTES)
                    and libc.mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def compile_cache_per_capability() -> str | None:
    """Give a process whose kernels are capped (ATEN_CPU_CAPABILITY, e.g. AVX2 emulation) its own inductor
    disk cache, unless TORCHINDUCTOR_CACHE_DIR is set; the directory, or None where nothing changed.

    Why: inductor's on-disk cache does not tell the cap apart, so a CPU kernel compiled natively (AVX-512)
    was loaded under ATEN_CPU_CAPABILITY=avx2 on the same machine (and the reverse) and gave garbage
    (tests/test_compile_cache.py). Called by the package's __init__, before any torch.compile (creating
    one fixes inductor's cache directory for the process).
    """
    capability = "".join(ch for ch in os.environ.get("ATEN_CPU_CAPABILITY", "").lower() if ch.isalnum())
    if not capability or "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        return None
    user = "".join(ch for ch in getpass.getuser() if ch.isalnum() or ch in "-_") or "user"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"torchinductor_{user}_{capability}")
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]

