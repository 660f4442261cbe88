"""lib/gpt2_bpe.py: the closed-form init keeps small differences where float64 can."""

import json

import numpy as np
import pytest

from lib.gpt2_bpe import merge_tree_scores
from lib.tokenizer import EOT


def test_init_scores_keep_small_differences_after_any_token(gpt2_bpe):
    """Viterbi adds scores left to right in float64. With configs/distill.yaml's rank_offset, a few of the top-scoring
    tokens summed have an ulp below the last merge's weight (1), so a difference that decides a piece alone
    still decides it after ' test'; with offset 0 the first merge alone weighs 6e18 (ulp 1024)."""
    from lib.config import load_config

    model = json.loads(gpt2_bpe.to_str())["model"]
    vocab = {s: i for s, i in model["vocab"].items() if s != EOT}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    offset = load_config("distill")["rank_offset"]  # what configs/distill.yaml gives users
    bounded = merge_tree_scores(vocab, merges, 4.0, offset)
    unbounded = merge_tree_scores(vocab, merges, 4.0, 0.0)
    assert offset > 0 and np.spacing(4 * max(bounded)) < 1 <= np.spacing(max(unbounded))
    last = vocab["".join(merges[-1])]
    assert bounded[last] - bounded[vocab[merges[-1][0]]] - bounded[
        vocab[merges[-1][1]]
    ] == pytest.approx(1.0)
