"""Two small C kernels for the CPU, compiled on first use and cached on disk, for the bf16 step.

- `fold_bf16`: the input gradient of the convolution is fold(Wᵀ @ g). The product gives one row per
  (bin, tap), and the fold adds each bin's `width` rows back up, row k shifted by k frames
  (`network.fold_padded`). In torch that is one strided sum, which in bfloat16 rounds the sums to
  bfloat16 and then needs a cast to float32; summing straight into float32 there is slower still.
  Here the product's bfloat16 columns are read once and float32 sums written: in the step 0.6 ms
  instead of 1.6 ms (benchmark/step_parts.py).
- `difference_terms_bf16`: `losses.difference_terms`, the (T, T) work between the style term's two
  products, in one pass instead of some fifteen small torch ops: about 0.4 ms instead of 1.0 ms.

Both run on both cores (OpenMP, the same runtime as torch's) and give torch's numbers: the fold and the
matrices bit for bit, the value's second-order terms to float64 round-off (torch sums one of them in
float32). `python benchmark/ab_fused.py` alternates the step with and without them.

They are built with the system's C compiler ($CC, else gcc or cc; -O3 -march=native -fopenmp) into
$MUSICSTYLE_CACHE_DIR (default ~/.cache/musicstyle), keyed by the source, the compiler, its flags and
the CPU, so a cache shared between different machines is safe; building takes well under a second.
Where compiling is off (MUSICSTYLE_COMPILE=0, which also turns off fused.py's compiled passes) or
fails (warned once), and on a GPU, torch's versions run.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

COMPILE = os.environ.get("MUSICSTYLE_COMPILE", "1") != "0"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")

SOURCE = r"""
#include <stdint.h>
#include <string.h>

static inline float from_bf16(uint16_t bits16) {  /* exact */
  uint32_t bits = (uint32_t)bits16 << 16;
  float value;
  memcpy(&value, &bits, 4);
  return value;
}

static inline uint16_t to_bf16(float value) {  /* round to nearest even, as torch; NaN as ATen's vector code */
  uint32_t bits;
  memcpy(&bits, &value, 4);
  uint16_t rounded = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
  return (bits & 0x7fffffffu) > 0x7f800000u ? (uint16_t)0xffffu : rounded;
}

/* out (bins, frames) float32: out[b, t] = sum_k columns[b * width + k, t - k] over the k with
   0 <= t - k < frames - width + 1; columns (bins * width, padded) bfloat16, row-major. */
void fold_bf16(const uint16_t *columns, int64_t bins, int64_t width, int64_t padded, int64_t frames,
               float *out) {
  const int64_t n = frames - width + 1;
  #pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < bins; b++) {
    float *o = out + b * frames;
    for (int64_t t = 0; t < frames; t++) o[t] = 0.0f;
    for (int64_t k = 0; k < width; k++) {
      const uint16_t *row = columns + (b * width + k) * padded;
      float *ok = o + k;
      #pragma omp simd
      for (int64_t j = 0; j < n; j++) ok[j] += from_bf16(row[j]);
    }
  }
}

/* losses.difference_terms: products (rows, columns) bfloat16 hold F0^T D, S^T D, D^T D in their first
   frames columns (row blocks [0, frames), [frames, fixed), [fixed, fixed + frames)). Writes
   ftf = A0 + dA (frames, frames) float32, right = [dA; -dB; A; 0] (rows, columns) bfloat16, and
   *second = 2 <A0, D^T D> + ||dA||^2 - 2 ||dB||^2, summed in float64. scratch: (frames, frames) float32. */
void difference_terms_bf16(const uint16_t *products, int64_t rows, int64_t columns, int64_t frames,
                           int64_t fixed, const float *anchor_ftf, float *ftf, uint16_t *right, double *second,
                           float *scratch) {
  double a0dd = 0.0, da2 = 0.0, db2 = 0.0;
  const int64_t tile = 32, tiles = (frames + tile - 1) / tile;
  #pragma omp parallel
  {
    #pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles * tiles; t++) {  /* scratch = (F0^T D)^T, tile by tile */
      int64_t i0 = (t / tiles) * tile, j0 = (t % tiles) * tile;
      int64_t i1 = i0 + tile < frames ? i0 + tile : frames, j1 = j0 + tile < frames ? j0 + tile : frames;
      for (int64_t i = i0; i < i1; i++)
        for (int64_t j = j0; j < j1; j++) scratch[j * frames + i] = from_bf16(products[i * columns + j]);
    }
    #pragma omp for schedule(static) reduction(+:a0dd, da2)
    for (int64_t i = 0; i < frames; i++) {  /* dA = F0^T D + (F0^T D)^T + D^T D; A = A0 + dA */
      const uint16_t *f0d = products + i * columns, *dd = products + (fixed + i) * columns;
      const float *f0d_t = scratch + i * frames, *a0 = anchor_ftf + i * frames;
      float *whole = ftf + i * frames;
      uint16_t *out_da = right + i * columns, *out_a = right + (fixed + i) * columns;
      #pragma omp simd reduction(+:a0dd, da2)
      for (int64_t j = 0; j < frames; j++) {
        float d2 = from_bf16(dd[j]);
        float da = from_bf16(f0d[j]) + f0d_t[j];
        da += d2;
        float a = a0[j] + da;
        whole[j] = a;
        out_da[j] = to_bf16(da);
        out_a[j] = to_bf16(a);
        a0dd += (double)a0[j] * (double)d2;
        da2 += (double)da * (double)da;
      }
      for (int64_t j = frames; j < columns; j++) out_da[j] = out_a[j] = 0;
    }
    #pragma omp for schedule(static) reduction(+:db2)
    for (int64_t i = frames; i < fixed; i++) {  /* -dB, dB = S^T D: the sign bit flipped */
      const uint16_t *db = products + i * columns;
      uint16_t *out = right + i * columns;
      #pragma omp simd reduction(+:db2)
      for (int64_t j = 0; j < frames; j++) {
        float value = from_bf16(db[j]);
        db2 += (double)value * (double)value;
        out[j] = db[j] ^ 0x8000u;
      }
      for (int64_t j = frames; j < columns; j++) out[j] = 0;
    }
    #pragma omp for schedule(static)
    for (int64_t i = fixed + frames; i < rows; i++)
      for (int64_t j = 0; j < columns; j++) right[i * columns + j] = 0;
  }
  *second = 2.0 * a0dd + da2 - 2.0 * db2;
}
"""

_library: list[ctypes.CDLL | None] = []  # [the loaded kernels, or None where they failed], once tried


def cache_dir() -> Path:
    """Where the compiled kernels are kept: $MUSICSTYLE_CACHE_DIR, else ~/.cache/musicstyle."""
    configured = os.environ.get("MUSICSTYLE_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "musicstyle"


def _cpu() -> str:
    """The CPU, as far as -march=native depends on it: its model and feature flags where Linux says."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine() + platform.processor()
    wanted = [line for line in lines if line.startswith(("model name", "flags"))]
    return platform.machine() + "\n".join(dict.fromkeys(wanted))


def build(source: str, name: str) -> Path:
    """The shared library for C `source`, compiled once per source, compiler and CPU (atomic rename, so
    processes that build at the same time do not see each other's half-written file)."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        raise RuntimeError("no C compiler found (gcc, cc or $CC)")
    key = hashlib.sha256("\0".join([source, compiler, *FLAGS, _cpu()]).encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}-{key}.so"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        src, lib = Path(tmp) / f"{name}.c", Path(tmp) / f"{name}.so"
        src.write_text(source)
        done = subprocess.run([compiler, *FLAGS, str(src), "-o", str(lib)], capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {(done.stderr.strip().splitlines() or [''])[0][:200]}")
        os.replace(lib, path)
    return path


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where compiling is off or failed (warned once per process)."""
    if not _library:
        lib = None
        if COMPILE:
            try:
                lib = ctypes.CDLL(str(build(SOURCE, "kernels")))
                lib.fold_bf16.argtypes = [ctypes.c_void_p, *[ctypes.c_int64] * 4, ctypes.c_void_p]
                lib.fold_bf16.restype = None
                lib.difference_terms_bf16.argtypes = [ctypes.c_void_p, *[ctypes.c_int64] * 4, *[ctypes.c_void_p] * 5]
                lib.difference_terms_bf16.restype = None
            except Exception as error:  # noqa: BLE001 - whatever stops the compiler or the loader
                reason = (str(error).strip().splitlines() or [""])[0][:200]
                warnings.warn(f"compiling musicstyle's C kernels failed ({type(error).__name__}: {reason}); "
                              "the fold and difference_terms run in torch (same numbers, slower)", stacklevel=2)
                lib = None
        _library.append(lib)
    return _library[0]


@contextlib.contextmanager
def turned_off() -> Iterator[None]:
    """Inside: torch's versions, as where nothing could be compiled (for comparisons: tests, ab_fused.py)."""
    before = _library[:]
    _library[:] = [None]
    try:
        yield
    finally:
        _library[:] = before


def fold_bf16(columns: torch.Tensor, kernel_width: int, frames: int) -> torch.Tensor | None:
    """`network.fold_padded` of bfloat16 columns (bins * width, padded), as float32 (bins, frames); None
    where the kernel does not apply (not a contiguous bfloat16 tensor on the CPU) or is not available."""
    rows, padded = columns.shape
    if (columns.dtype != torch.bfloat16 or columns.device.type != "cpu" or not columns.is_contiguous()
            or padded < frames - kernel_width + 1):
        return None
    lib = library()
    if lib is None:
        return None
    out = torch.empty(rows // kernel_width, frames, dtype=torch.float32)
    lib.fold_bf16(columns.data_ptr(), rows // kernel_width, kernel_width, padded, frames, out.data_ptr())
    return out


def difference_terms_bf16(products: torch.Tensor, anchor_ftf: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """`losses.difference_terms` in one pass: (F^T F, the second-order value terms, the second product's
    right operand), the sums in float64; None where the kernel does not apply (not contiguous bfloat16
    products and float32 anchor on the CPU) or is not available."""
    rows, columns = products.shape
    frames = anchor_ftf.shape[0]
    if (products.dtype != torch.bfloat16 or products.device.type != "cpu" or not products.is_contiguous()
            or anchor_ftf.dtype != torch.float32 or not anchor_ftf.is_contiguous() or columns < frames):
        return None
    lib = library()
    if lib is None:
        return None
    fixed = rows - columns
    ftf = torch.empty(frames, frames, dtype=torch.float32)
    right = torch.empty_like(products)
    second = torch.empty((), dtype=torch.float64)
    scratch = torch.empty(frames, frames, dtype=torch.float32)
    lib.difference_terms_bf16(products.data_ptr(), rows, columns, frames, fixed, anchor_ftf.data_ptr(),
                              ftf.data_ptr(), right.data_ptr(), second.data_ptr(), scratch.data_ptr())
    return ftf, second, right
