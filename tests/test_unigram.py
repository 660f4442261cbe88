"""lib/unigram.py: the repair index skips only the examples a change cannot affect."""

import json

import numpy as np

from lib.gpt2_bpe import merge_tree_scores
from lib.tokenizer import EOT


def test_repair_index_skips_only_examples_that_cannot_change(gpt2_bpe):
    """The exactness of the repair's skip (lib/unigram.py): under random raises and lowerings, some just
    enough to flip a near tie, every example left out of affected() keeps its Viterbi path; kept changes
    charge the skipped examples (drift) and the bound stays sound over a sequence of them."""
    import random

    from lib.unigram import RepairIndex, lattice, viterbi

    vocab = {s: i for s, i in gpt2_bpe.get_vocab().items() if s != EOT}
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
        for m in json.loads(gpt2_bpe.to_str())["model"]["merges"]
    ]
    scores = merge_tree_scores(vocab, merges, 4.0)
    rng = random.Random(0)
    pool = sorted(s for s in vocab if len(s) > 1)
    words = sorted({rng.choice(pool) + rng.choice(pool) for _ in range(400)}) + [
        "ĠIEEEFloat",
        "Ġtoknum",
        "########",
    ]
    lats = [lattice(w, vocab, 64) for w in words]
    index = RepairIndex(
        lats,
        [tuple(gpt2_bpe.encode(w).ids) for w in words],
        [1] * len(words),
        [len(w) for w in words],
        [len(s) for s, _ in sorted(vocab.items(), key=lambda x: x[1])] + [len(EOT)],
    )
    index.refresh_all(scores)
    skipped = kept = changed = 0
    for trial in range(300):
        k = rng.randrange(len(words))
        toks = index.tokens[k]
        gaps = index.gap[index.pos[index.ex_ptr[k] : index.ex_ptr[k + 1]]]
        runner = max(float(index.runner[k]), 1.0) if np.isfinite(index.runner[k]) else 1.0
        near = rng.choice(
            [0.5, 1 - 1e-12, 1.0, 1 + 1e-12, 2.0]
        )  # just short of a flip, at it, past it
        kind = rng.randrange(3)
        if (
            kind == 0 and np.isfinite(gaps).any()
        ):  # raise a token with an edge off the path by its gap
            j = rng.choice([j for j in range(len(toks)) if np.isfinite(gaps[j])])
            group, delta = [toks[j]], max(float(gaps[j]), 1.0) * near
        elif kind == 1:  # raise a token of the path, and maybe every token built on it
            group = sorted({rng.choice(index.paths[k])} | set(rng.sample(toks, min(3, len(toks)))))
            delta = runner * near
        else:  # lower a token of the path by about the runner-up gap
            group, delta = [rng.choice(index.paths[k])], -runner * near
        affected = set(index.affected(group, delta, scores).tolist())
        old = [scores[i] for i in group]
        for i in group:
            scores[i] += delta
        for h in range(len(words)):
            if h not in affected:
                skipped += 1
                assert tuple(viterbi(lats[h], scores)) == index.paths[h], (words[h], group, delta)
            else:
                changed += tuple(viterbi(lats[h], scores)) != index.paths[h]
        for i, x in zip(group, old):
            scores[i] = x
        if trial % 3 == 0:
            index.apply(group, delta, scores, np.array(sorted(affected), dtype=np.int64))
            kept += 1
    assert (
        skipped > 50 * 300 and changed > 10 and kept == 100
    )  # it skips most, and the changes it keeps are real
