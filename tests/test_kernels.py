"""The C fold (kernels.py): the same float32 sums as torch's fallback, its cache, and the fallback."""

from __future__ import annotations

import pytest
import torch

from musicstyle import kernels
from musicstyle.network import fold_padded, unfold_frames


@pytest.fixture
def fresh_kernels(tmp_path, monkeypatch):
    """kernels.py as in a new process, building into an empty cache; put back afterwards."""
    monkeypatch.setenv("MUSICSTYLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(kernels, "_library", [])
    return tmp_path / "cache"


def bf16_columns(bins: int, width: int, frames: int, padded: int, seed: int = 0) -> torch.Tensor:
    """What the input-gradient product gives: (bins * width, padded) bfloat16, zeros past the data."""
    data = frames - width + 1
    columns = torch.zeros(bins * width, padded, dtype=torch.bfloat16)
    columns[:, :data] = torch.randn(bins * width, data, generator=torch.Generator().manual_seed(seed)).bfloat16()
    return columns


def torch_fold(columns: torch.Tensor, width: int, frames: int) -> torch.Tensor:
    """fold_padded with the kernel turned off: torch's strided sum."""
    with kernels.turned_off():
        return fold_padded(columns, width, frames)


@pytest.mark.parametrize(("bins", "width", "frames", "padded"),
                         [(1025, 11, 431, 448), (3, 4, 25, 32), (7, 1, 5, 6), (1, 11, 11, 12), (5, 3, 40, 41)])
def test_c_fold_gives_torch_folds_float32_sums(fresh_kernels, bins, width, frames, padded):
    if kernels.library() is None:
        pytest.skip("no C compiler here: the fold runs in torch (what the other tests check)")
    columns = bf16_columns(bins, width, frames, padded)
    folded = fold_padded(columns, width, frames)
    assert folded.dtype == torch.float32 and folded.shape == (bins, frames) and folded.is_contiguous()
    assert torch.equal(folded, torch_fold(columns, width, frames))  # same order of the same float32 sums
    exact = fold_padded(columns.double(), width, frames)
    assert (folded.double() - exact).abs().max() <= 1e-6 * exact.abs().max()
    # and it is the adjoint of the unfold: <unfold(x), c> = <x, fold(c)>
    x = torch.randn(bins, frames, dtype=torch.float64)
    lhs = (unfold_frames(x, width, padded) * columns.double()).sum()
    assert torch.isclose(lhs, (x * folded.double()).sum(), rtol=1e-6)


def test_fold_of_bf16_columns_no_longer_rounds_its_sums_to_bf16():
    columns = bf16_columns(64, 11, 60, 64, seed=1)
    exact = fold_padded(columns.double(), 11, 60)
    error = (fold_padded(columns, 11, 60).double() - exact).abs().max()
    bf16_sums = fold_padded(columns.double(), 11, 60).bfloat16().double()  # what the old fold returned, at best
    assert error < 1e-3 * (bf16_sums - exact).abs().max()


def test_built_once_then_taken_from_the_cache(fresh_kernels, monkeypatch):
    if kernels.library() is None:
        pytest.skip("no C compiler here")
    built = list(fresh_kernels.glob("kernels-*.so"))
    assert len(built) == 1

    def no_compiler(*args, **kwargs):
        raise AssertionError("compiled again although the cache has it")

    monkeypatch.setattr(kernels.subprocess, "run", no_compiler)
    assert kernels.build(kernels.SOURCE, "kernels") == built[0]
    monkeypatch.setattr(kernels, "FLAGS", (*kernels.FLAGS, "-DOTHER"))  # other flags: another file
    with pytest.raises(AssertionError, match="compiled again"):
        kernels.build(kernels.SOURCE, "kernels")


def test_no_compiler_warns_once_and_folds_in_torch(fresh_kernels, monkeypatch):
    monkeypatch.setenv("CC", str(fresh_kernels / "no-such-compiler"))
    columns = bf16_columns(5, 3, 40, 41)
    with pytest.warns(UserWarning, match="C kernels failed"):
        folded = fold_padded(columns, 3, 40)
    assert kernels._library == [None]
    assert torch.equal(folded, torch_fold(columns, 3, 40))
    exact = fold_padded(columns.double(), 3, 40)
    assert (folded.double() - exact).abs().max() <= 1e-6 * exact.abs().max()


def test_compiling_off_builds_nothing(fresh_kernels, monkeypatch):
    monkeypatch.setattr(kernels, "COMPILE", False)
    assert kernels.fold_bf16(bf16_columns(2, 3, 10, 16), 3, 10) is None
    assert not fresh_kernels.exists()


def test_kernel_only_takes_what_it_can_fold(fresh_kernels):
    columns = bf16_columns(4, 3, 20, 32)
    assert kernels.fold_bf16(columns.float(), 3, 20) is None  # float32 products: torch's sum
    assert kernels.fold_bf16(columns[:, :16], 3, 20) is None  # not contiguous
    assert kernels.fold_bf16(columns[:, :10].contiguous(), 3, 20) is None  # fewer columns than frames - width + 1


def style_products(frames: int = 37, style_frames: int = 29, filters: int = 300, seed: int = 2
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first style product of a bf16 step through an anchor, and the anchor's F0^T F0, at small shapes."""
    from musicstyle.losses import anchor_operand, style_anchor, style_target

    g = torch.Generator().manual_seed(seed)
    f0 = torch.rand(filters, frames, generator=g)
    target = style_target(torch.rand(filters, style_frames, generator=g), frames, "frames")
    anchor = style_anchor(f0, target)
    left, slot = anchor_operand(anchor, target)
    slot.copy_(0.01 * torch.randn(filters, frames, generator=g))
    fixed = frames + style_frames
    return left.T @ left[:, fixed:], anchor.ftf


def test_c_difference_terms_give_torchs(fresh_kernels):
    from musicstyle.losses import difference_terms

    if kernels.library() is None:
        pytest.skip("no C compiler here: difference_terms runs in torch")
    products, anchor_ftf = style_products()
    ftf, second, right = difference_terms(products, anchor_ftf)
    with kernels.turned_off():
        torch_ftf, torch_second, torch_right = difference_terms(products, anchor_ftf)
    assert kernels.library() is not None  # back on afterwards
    assert torch.equal(ftf, torch_ftf)
    assert torch.equal(right.view(torch.int16), torch_right.view(torch.int16))  # the zeros' signs too
    assert second.dtype == torch.float64 and second.shape == ()
    # the value's terms: float64 sums of the float32 dA, here and there (torch's <A0, D^T D> in float32)
    frames, fixed = anchor_ftf.shape[0], products.shape[0] - products.shape[1]
    p = products[:, :frames].double()
    dd, db = p[fixed:fixed + frames], p[frames:fixed]
    da = (products[:frames, :frames].float() + products[:frames, :frames].float().T + dd.float()).double()
    exact = 2.0 * (anchor_ftf.double() * dd).sum() + (da * da).sum() - 2.0 * (db * db).sum()
    assert abs(float(second - exact)) <= 1e-12 * abs(float(exact))
    assert abs(float(torch_second - exact)) <= 1e-6 * abs(float(exact))
