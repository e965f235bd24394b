"""bf16 against float32 on the base paper's songs at full settings (minutes: marked slow).

The base paper's row, and the blog's LeakyReLU row: style-heavy (alpha 1e-3, beta 10), where rounding
the whole spectrogram to bfloat16 at each product ended 7.5 % above float32 before the anchors
(engine/fast/anchors.py).
"""

from __future__ import annotations

import pytest

from musicstyle.config import TransferConfig
from musicstyle.data.paper_songs import PAPER_ROWS
from musicstyle.engine.optimize import clear_problem_cache, optimize_spectrogram
from musicstyle.engine.transfer import load_pair

pytestmark = pytest.mark.slow


@pytest.mark.usefixtures("bf16_forced")
@pytest.mark.parametrize("row", PAPER_ROWS[:2], ids=lambda row: row.name)
def test_bf16_final_loss_is_within_one_percent_of_float32(paper_songs, row):
    config = TransferConfig().replace(device="cpu", **row.settings)
    pair = load_pair(*paper_songs, config)
    fp32 = optimize_spectrogram(pair.content, pair.style, config)
    bf16 = optimize_spectrogram(pair.content, pair.style, config.replace(precision="bf16"))
    clear_problem_cache()
    assert not fp32.float64_fallback and not bf16.float64_fallback
    assert bf16.final_loss == pytest.approx(fp32.final_loss, rel=0.01), (bf16.final_loss, fp32.final_loss)
