"""07 align's init strategies: AdaptiVocab's exponential weights, transformers' mean+covariance sampling."""

import importlib.util

import pytest
import torch

from conftest import ROOT


@pytest.fixture(scope="module")
def align():
    spec = importlib.util.spec_from_file_location("step_07", ROOT / "scripts" / "07_align.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exp_weights(align):
    last, first, both = (align.exp_weights(4, side) for side in ("last", "first", "both"))
    for w in (last, first, both):
        assert torch.isclose(w.sum(), torch.tensor(1.0))
    assert torch.all(last[1:] > last[:-1]) and torch.all(first[1:] < first[:-1])
    assert torch.allclose(both, both.flip(0)) and both[0] > both[1]  # the ends weigh most in the tied row
    assert torch.allclose(last, torch.exp(torch.arange(4.0)) / torch.exp(torch.arange(4.0)).sum())
    assert torch.equal(align.exp_weights(1, "both"), torch.ones(1))


def test_adaptivocab_rows_are_the_weighted_pieces(align, gpt2_bpe):
    torch.manual_seed(0)
    wte = torch.randn(50257, 8)
    rules = [{"text": " hello world"}, {"text": "a"}]
    ids = gpt2_bpe.encode(" hello world", add_special_tokens=False).ids
    assert len(ids) == 2
    e = torch.exp(torch.tensor([0.0, 1.0]))
    rows = align.init_rows("adaptivocab-input", wte, rules, gpt2_bpe, seed=0)
    assert torch.allclose(rows[0], (e[0] * wte[ids[0]] + e[1] * wte[ids[1]]) / e.sum(), atol=1e-6)
    rows = align.init_rows("adaptivocab-output", wte, rules, gpt2_bpe, seed=0)
    assert torch.allclose(rows[0], (e[1] * wte[ids[0]] + e[0] * wte[ids[1]]) / e.sum(), atol=1e-6)
    rows = align.init_rows("adaptivocab", wte, rules, gpt2_bpe, seed=0)
    assert torch.allclose(rows[0], (wte[ids[0]] + wte[ids[1]]) / 2, atol=1e-6)  # two pieces: symmetric = mean
    assert torch.equal(rows[1], wte[gpt2_bpe.encode("a", add_special_tokens=False).ids[0]])


def test_mean_cov_is_seeded_jitter_around_the_mean(align):
    torch.manual_seed(0)
    wte = torch.randn(50257, 16) * 0.1 + 0.05
    a, b = align.mean_cov_rows(wte, 5, seed=0), align.mean_cov_rows(wte, 5, seed=0)
    assert torch.equal(a, b) and not torch.equal(a, align.mean_cov_rows(wte, 5, seed=1))
    mean = wte.double().mean(0).float()
    assert not torch.equal(a[0], mean)
    assert (a - mean).abs().max() < 1e-3 * wte.std()  # 1e-9 x covariance: std ~3e-5 of the rows'
    flat = torch.ones(50257, 16)  # covariance 0: not positive definite -> the mean, as transformers does
    assert torch.equal(align.mean_cov_rows(flat, 3, seed=0), torch.ones(3, 16))
