"""lib/greedy_repair.py: a change is kept only when it fixes more than it breaks, guard strings included."""

import json

from distill_fixture import exact_case, group_case

from lib.gpt2_bpe import bare, merge_tree_scores
from lib.greedy_repair import Moves, merged_from, repair_example
from lib.tokenizer import EOT


def test_repair_keeps_a_change_only_when_it_outweighs_its_guard_loss(gpt2_bpe):
    """repair_example subtracts the guards' loss from a change's gain: the same wrong piece is fixed when
    its fix breaks nothing, and left wrong when the fix would break as much as it fixes."""
    from lib.unigram import RepairIndex, lattice, viterbi

    model = json.loads(gpt2_bpe.to_str())["model"]
    vocab = {s: i for s, i in model["vocab"].items() if s != EOT}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    init = merge_tree_scores(vocab, merges, 4.0, 10.0)
    word = "ĠPARSER"  # the closed form cuts it 'ĠPAR' + 'SER', BPE 'ĠP' + 'ARS' + 'ER'
    label = tuple(bare(gpt2_bpe).encode(word).ids)
    token_len = [len(s) for s, _ in sorted(vocab.items(), key=lambda x: x[1])] + [len(EOT)]

    class FixedLoss:
        def __init__(self, loss):
            self.value, self.outweighed = loss, 0

        def loss(self, group, delta, scores):
            return self.value

    kept = {}
    for loss in (0, 1):
        scores = list(init)
        index = RepairIndex([lattice(word, vocab, 64)], [label], [1], [len(word)], token_len)
        index.refresh_all(scores)
        assert not index.right[0]
        guards = FixedLoss(loss)
        moves = Moves(merged_from(vocab, merges), 1e-12)
        kept[loss] = repair_example(0, index, scores, moves, guards)
        assert (tuple(viterbi(index.lats[0], scores)) == label) == kept[loss]
        assert (guards.outweighed > 0) == (loss > 0)
    assert kept == {0: True, 1: False}


def test_repair_lowers_a_token_with_its_extensions_when_alone_it_breaks_one():
    """'abc' (label a+bc) is cut ab+c. Each single move that fixes it breaks another example: raising 'a'
    breaks 'ae', raising 'bc' breaks 'bce', lowering 'c' breaks 'cf', and lowering 'ab' alone breaks 'abdd'
    (ab+dd over abd+d). Lowering 'ab' together with 'abd', which is built on it, keeps that comparison, so
    it is the change the repair keeps: every example right, ab and abd moved by the same amount."""
    from lib.unigram import viterbi

    strings, merges, scores, examples = group_case()
    before = list(scores)
    vocab, index, ex = exact_case(strings, examples, scores)
    labels = [y for _, y, _ in ex]
    assert index.right == [False, True, True, True, True]
    up = merged_from(vocab, merges)
    assert not repair_example(0, index, scores, Moves(up, 1e-12, max_group=1))  # single tokens only
    assert scores == before
    assert repair_example(0, index, scores, Moves(up, 1e-12))
    assert all(tuple(viterbi(lat, scores)) == y for lat, y in zip(index.lats, labels))
    moved = {
        strings[i]: scores[i] - before[i] for i in range(len(strings)) if scores[i] != before[i]
    }
    assert set(moved) == {"ab", "abd"} and moved["ab"] == moved["abd"] < 0
