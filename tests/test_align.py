"""lib/init_rows.py and lib/init_compare.py, 07 align's init strategies: AdaptiVocab's exponential weights, transformers' mean+covariance sampling."""

from types import SimpleNamespace

import pytest
import torch

from lib.files import first_docs, iter_docs
from lib.init_compare import compare_strategies
from lib.token_distillation import LEARNED


@pytest.fixture(scope="module")
def align():
    """The init strategies and their comparison, as one namespace (lib/init_rows.py, lib/init_compare.py)."""
    import lib.init_compare
    import lib.init_rows

    return SimpleNamespace(**{**vars(lib.init_rows), **vars(lib.init_compare)})


def test_exp_weights(align):
    last, first, both = (align.exp_weights(4, side) for side in ("last", "first", "both"))
    for w in (last, first, both):
        assert torch.isclose(w.sum(), torch.tensor(1.0))
    assert torch.all(last[1:] > last[:-1]) and torch.all(first[1:] < first[:-1])
    assert (
        torch.allclose(both, both.flip(0)) and both[0] > both[1]
    )  # the ends weigh most in the tied row
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
    assert torch.allclose(
        rows[0], (wte[ids[0]] + wte[ids[1]]) / 2, atol=1e-6
    )  # two pieces: symmetric = mean
    assert torch.equal(rows[1], wte[gpt2_bpe.encode("a", add_special_tokens=False).ids[0]])


def test_mean_cov_is_seeded_jitter_around_the_mean(align):
    torch.manual_seed(0)
    wte = torch.randn(50257, 16) * 0.1 + 0.05
    a, b = align.mean_cov_rows(wte, 5, seed=0), align.mean_cov_rows(wte, 5, seed=0)
    assert torch.equal(a, b) and not torch.equal(a, align.mean_cov_rows(wte, 5, seed=1))
    mean = wte.double().mean(0).float()
    relative = (a - mean).norm(dim=1) / mean.norm()
    assert torch.all(relative < 1e-3) and torch.all(relative > 1e-6)  # a jitter, not float noise
    assert (a - mean).abs().max() < 1e-3 * wte.std()  # 1e-9 x covariance: std ~3e-5 of the rows'
    assert not torch.equal(a[0], a[1])


def test_mean_cov_falls_back_to_the_mean(align):
    flat = torch.ones(
        50257, 16
    )  # covariance 0: not positive definite -> the mean, as transformers does
    assert torch.equal(align.mean_cov_rows(flat, 3, seed=0), torch.ones(3, 16))
    torch.manual_seed(0)
    wte = torch.randn(1000, 8)
    wte[:, 3] = 0.5  # one constant column: a zero row and column in the covariance
    rows = align.mean_cov_rows(wte, 2, seed=0)
    assert torch.allclose(rows, wte.double().mean(0).float().expand(2, 8))


def test_every_strategy_of_the_schema(align, gpt2_bpe):
    """07 has a row for each name the schema accepts (the learned ones from lib/token_distillation.py),
    and the default compares them all."""
    from lib.schema import INIT_STRATEGIES, AlignConfig

    assert AlignConfig().compare_strategies == list(INIT_STRATEGIES)
    assert {"adaptivocab", "adaptivocab-input", "adaptivocab-output", "mean-cov"} <= set(
        INIT_STRATEGIES
    )
    torch.manual_seed(0)
    wte = torch.randn(50257, 8)
    rules = [{"text": "    return"}, {"text": " the"}]
    single = wte[gpt2_bpe.encode(" the", add_special_tokens=False).ids[0]]
    for strategy in INIT_STRATEGIES:
        AlignConfig(init_strategy=strategy, compare_strategies=[strategy])
        if strategy in LEARNED:  # they need the model: test_token_distillation.py
            continue
        rows = align.init_rows(strategy, wte, rules, gpt2_bpe, seed=0)
        assert rows.shape == (2, 8) and rows.dtype == wte.dtype, strategy
        if strategy in ("subword-mean", *align.PIECE_WEIGHTING):
            assert torch.equal(rows[1], single), strategy  # one piece: exactly its row


def test_random_model_reference(align, gpt2_bpe):
    """Seeded, the same for the same seed, other for another, and the global RNG is left as it was."""
    from transformers import GPT2Config

    config = GPT2Config(vocab_size=50257, n_layer=1, n_head=2, n_embd=16, n_positions=32)
    texts = ["def f(x):\n    return x + 1\n", "Some prose, with words.\n"]
    cfg = {"seed": 0, "batch_size": 4}
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = align.random_model_reference(config, gpt2_bpe, texts, 16, cfg)
    assert torch.equal(torch.get_rng_state(), before)
    assert (
        a["bits_per_byte"]
        == align.random_model_reference(config, gpt2_bpe, texts, 16, cfg)["bits_per_byte"]
    )
    other = align.random_model_reference(config, gpt2_bpe, texts, 16, {**cfg, "seed": 1})
    assert other["bits_per_byte"] != a["bits_per_byte"]
    # a random model is near uniform over 50,257 ids: about log2(50257) = 15.6 bits per token
    assert 14 < a["bits_per_byte"] / a["tokens_per_byte"] < 17 and "seconds" in a


def test_comparison_keeps_the_reference_out_of_the_ranking(align, gpt2_bpe, tmp_path):
    """compare_strategies: the random model sits under references (as 09_report reads it), choose() ranks only
    compare_strategies, and the model gets its own rows back."""
    import json

    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=50257, n_layer=1, n_head=2, n_embd=16, n_positions=32)
    ).eval()
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in ("def f(x):\n    return x\n", "a b c\n"))
    )
    cfg = {
        "init_strategy": "best",
        "rank_by": "untrained",
        "compare_strategies": ["mean", "zeros", "adaptivocab"],
        "seed": 0,
        "compare_max_bytes": 0,
        "block_size": 16,
        "batch_size": 4,
    }
    wte = model.get_input_embeddings().weight.detach().clone()
    reassigned = {
        40000: {"id": 40000, "text": "    return"},
        40001: {"id": 40001, "text": ":\n   "},
    }
    _, finals = align.final_rows(wte, reassigned, gpt2_bpe, cfg)
    texts, _ = first_docs(iter_docs(heldout), cfg["compare_max_bytes"])
    comparison = {
        "smoke_tiny_random_model": True,
        **compare_strategies(model, wte, finals, (gpt2_bpe, gpt2_bpe), texts, cfg),
    }
    reference = comparison["references"]["random_init_same_shape"]
    assert reference["label"] == align.RANDOM_REFERENCE and reference["bits_per_byte"] > 0
    assert align.RANDOM_REFERENCE not in comparison["strategies"]
    assert {"gpt2 as is (original tokenizer)", "old rows kept (no init)"} <= set(
        comparison["strategies"]
    )
    assert align.choose(comparison, cfg)[0] in cfg["compare_strategies"]
    assert torch.equal(model.get_input_embeddings().weight, wte)


def test_short_finetune_ranking_is_seeded_and_leaves_the_model(align, gpt2_bpe):
    """rank_by_short_finetune: each strategy's rows trained briefly on a copy of the model, the same
    figures on a second call, and the model's own weights untouched."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=50257, n_layer=1, n_head=2, n_embd=16, n_positions=33)
    ).eval()
    wte = model.get_input_embeddings().weight.detach().clone()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    finals = {"zeros": wte.clone(), "mean": wte.clone()}
    finals["zeros"][40000] = 0
    finals["mean"][40000] = wte.mean(0)
    cfg = {
        "compare_strategies": ["zeros", "mean"],
        "block_size": 64,
        "batch_size": 4,
        "seed": 0,
        "short_finetune_steps": 3,
        "short_finetune_batch_size": 2,
        "short_finetune_lr": 1e-3,
    }
    train = [f"def f{i}(x):\n    return x * {i}\n" for i in range(30)]
    texts = (train, ["def g(y):\n    return y\n"])
    a = align.rank_by_short_finetune(model, finals, gpt2_bpe, texts, cfg)
    b = align.rank_by_short_finetune(model, finals, gpt2_bpe, texts, cfg)
    assert set(a) == {"zeros", "mean"}
    assert all(a[s]["bits_per_byte"] == b[s]["bits_per_byte"] > 0 for s in a)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
