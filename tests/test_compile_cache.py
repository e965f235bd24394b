"""Compiled kernels under a capped CPU capability (AVX2 emulation): inductor's disk cache must not hand a
capped process the kernels another capability compiled (engine/fast/fused.py, compile_cache_per_capability).
Before the fix, a native run followed by an ATEN_CPU_CAPABILITY=avx2 run on the same machine gave the
limit's series kernels errors of 1e35 and NaN gradients."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import REPO

SCRIPT = """
import json, os, torch
from musicstyle.engine.limit.series import _pass, _terms_first, series_coefficients, series_grads, series_value
torch.manual_seed(0)
errors = []
for rows, cols in [(37, 53), (96, 96)]:
    a, b = torch.rand(rows, 1) + 0.5, torch.rand(1, cols) + 0.5
    c = (torch.rand(rows, cols) - 0.5) * 0.5
    ra, rb = a.sqrt(), b.sqrt()
    ca, cb = (_terms_first(series_coefficients(r, "elu")) for r in (ra, rb))
    sa, sb = (_terms_first(series_coefficients(r, "elu", derivative=True)) for r in (ra, rb))
    rho, grad = c / (ra * rb), torch.randn(rows, cols)
    clamped = rho.clamp(-1, 1)
    errors.append(float((_pass("value")(ca, cb, clamped) - series_value(ca, cb, clamped)).abs().max()))
    compiled = _pass("grads")(grad, ca, cb, sa, sb, rho, ra, rb)
    plain = series_grads(grad, ca, cb, sa, sb, rho, ra, rb)
    errors += [float((x - y).abs().max()) for x, y in zip(compiled, plain)]
print(json.dumps({"error": max(errors), "cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR")}))
"""


def run(env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_capped_process_compiles_into_its_own_cache_and_gets_the_plain_numbers(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "ATEN_CPU_CAPABILITY")}
    env |= {"TMPDIR": str(tmp_path), "MUSICSTYLE_COMPILE": "1"}  # inductor's default cache lives in TMPDIR
    native = run(env)  # compiles into the default cache first, as a native benchmark would
    capped = run(env | {"ATEN_CPU_CAPABILITY": "avx2"})
    assert native["error"] < 1e-5 and "avx2" not in str(native["cache"])
    assert capped["error"] < 1e-5, capped
    assert capped["cache"].startswith(str(tmp_path)) and capped["cache"].endswith("_avx2")
    chosen = run(env | {"ATEN_CPU_CAPABILITY": "avx2", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine")})
    assert chosen["cache"] == str(tmp_path / "mine") and chosen["error"] < 1e-5  # the user's choice stands
