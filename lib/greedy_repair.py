"""Greedy repair of the closed-form scores (Viterbi and the skip index: lib/unigram.py).

For each example whose Viterbi output differs from BPE's, try raising one token of BPE's segmentation or
lowering one token of the Viterbi output just enough, alone or with every token built on it; keep the
change that fixes the most example weight net, checked on every example whose output the change can alter
(RepairIndex proves the others keep theirs), less the guard strings it breaks (lib/pair_guards.py).

    >>> state, history = learn(examples, bpe, scores, cfg, guards)
    >>> history            # wrong example weight: the init, then after each round
    [5210, 812, 301, 290]
"""

import collections
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from tqdm import tqdm

from lib.log import log
from lib.unigram import RepairIndex, as_tokenizers_reads, is_right, lattice, path_score, viterbi


@dataclass
class RepairState:
    """What the repairs and the certification work on: the examples [(piece, BPE ids, weight)], their
    RepairIndex (lattices, labels, Viterbi outputs under scores), the scores (changed in place), the pair
    guards (None: off) and the config (margin_rel, exact_repair_*, certify_*)."""

    examples: list
    index: RepairIndex
    scores: list
    guards: object | None
    cfg: dict

    @cached_property
    def cost(self):
        """A token's cost per unit of change in an LP: log2(2 + the examples holding it), so that the LP
        prefers moving rare tokens, which disturb less text."""
        return np.log2(2.0 + np.diff(self.index.tok_ptr))


@dataclass
class Moves:
    """What one greedy repair may move: up {token: the tokens merged directly from it} (merged_from), the
    margin BPE's segmentation must win by (a share of its score), the most tokens of a group move."""

    up: dict
    margin_rel: float
    max_group: int = 1024


def index_examples(items, bpe, scores, targets=None):
    """The RepairIndex of items [(piece, ids, weight)] refreshed under scores (rounded first to what
    tokenizers reads back, in place)."""
    lats = [
        lattice(p, bpe.vocab, bpe.max_len)
        for p, _, _ in tqdm(items, desc="lattices", unit="ex", mininterval=1, leave=False)
    ]
    index = RepairIndex(
        lats,
        [y for _, y, _ in items],
        [w for _, _, w in items],
        [len(p) for p, _, _ in items],
        bpe.token_len,
    )
    index.targets = targets  # read by change_gain: a wrong example that is no target adds nothing
    scores[:] = as_tokenizers_reads(scores, until_stable=True)
    index.refresh_all(scores, progress="Viterbi of every example")
    return index


def learn(examples, bpe, scores, cfg, guards=None):
    """Greedy repair of scores on examples (lib.examples.Examples), up to max_rounds rounds within
    greedy_repair_time_limit; returns (RepairState, history: the wrong example weight after each round).
    guards: PairGuards, whose loss counts against a change (None: none)."""
    targets = examples.targets
    index = index_examples(examples.items, bpe, scores, targets)
    moves = Moves(
        merged_from(bpe.vocab, bpe.merges), cfg["margin_rel"], cfg["repair_group_max_tokens"]
    )
    history = [index.wrong_weight()]
    deadline = time.monotonic() + cfg["greedy_repair_time_limit"]
    # A repair attempt is a function of the scores alone (the skip index changes its cost, not its result),
    # so an example that failed is not tried again until some score has moved since.
    n_moves, failed_at = 0, {}
    for rnd in range(cfg["max_rounds"]):
        wrong = sorted(
            (k for k, r in enumerate(index.right) if not r and (targets is None or targets[k])),
            key=lambda k: (-examples.items[k][2], examples.items[k][0]),
        )
        applied = 0
        for k in tqdm(wrong, desc=f"repair round {rnd + 1}", unit="ex", mininterval=1, leave=False):
            if index.right[k] or failed_at.get(k) == n_moves:
                continue
            if repair_example(k, index, scores, moves, guards):
                applied, n_moves = applied + 1, n_moves + 1
            else:
                failed_at[k] = n_moves
        n_moves += bool(
            settle(index, scores, progress=f"round {rnd + 1}: Viterbi of the examples touched")
        )
        history.append(index.wrong_weight())
        log.info(
            f"repair round {rnd + 1}: {applied:,} changes, wrong example weight {history[-1]:,}"
        )
        if not applied:
            break
        if time.monotonic() > deadline:
            log.warning(
                f"greedy repair: stopped after round {rnd + 1} at greedy_repair_time_limit "
                f"({cfg['greedy_repair_time_limit']} s); the scores are those found so far: "
                "raise it in configs/distill.yaml"
            )
            break
    if guards:
        log.info("pair guards: " + ", ".join(f"{k} {v:,}" for k, v in guards.summary().items()))
    return RepairState(examples.items, index, scores, guards, cfg), history


def merged_from(vocab, merges):
    """{token id: the tokens merged directly from it}."""
    up = collections.defaultdict(list)
    for a, b in merges:
        up[vocab[a]].append(vocab[a + b])
        up[vocab[b]].append(vocab[a + b])
    return up


def built_on(i, up, max_group):
    """Token i and every token built on it (sorted), or None when that is more than max_group tokens."""
    seen, todo = {i}, [i]
    while todo and len(seen) <= max_group:
        for j in up[todo.pop()]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return sorted(seen) if len(seen) <= max_group else None


def settle(index, scores, progress=None):
    """Round the scores to what tokenizers reads back from a tokenizer.json and refresh the examples that
    a rounding touched or whose bounds drifted (so index is exact again); returns the tokens rounded."""
    before = list(scores)
    scores[:] = as_tokenizers_reads(scores, until_stable=True)
    moved = [i for i, (x, y) in enumerate(zip(before, scores)) if x != y]
    index.refresh_touched(moved, scores, progress=progress)
    return moved


def repair_example(k, index, scores, moves, guards=None):
    """Try raising one token of BPE's segmentation of example k, or lowering one token of its Viterbi output,
    just enough, alone or with every token built on it by the same amount (as if its merge weighed more or
    less). A group move leaves each token's comparisons with its own extensions ('urn' with 'return') as
    they were, where BPE's merge order decides them, and keeps ties that float64 cannot resolve in order;
    moves: Moves (the merge graph, the margin, the most tokens of a group). Keep the change that fixes the most example weight net, counted on the
    examples it can affect (RepairIndex.affected), less what it breaks among the guard strings
    (guards.loss, only for a change that would win without it); True if one was kept."""
    y, y_hat = index.labels[k], viterbi(index.lats[k], scores)
    diff = collections.Counter(y)
    diff.subtract(y_hat)
    s_y, s_hat = path_score(y, scores), path_score(y_hat, scores)
    # the margin must outgrow float64 rounding of every score it touches
    up, max_group = moves.up, moves.max_group
    need = (
        s_hat
        - s_y
        + moves.margin_rel * max(abs(s_y), abs(s_hat), *(abs(scores[i]) for i in diff), 1.0)
    )
    candidates = [[i] for i, v in sorted(diff.items()) if v]
    candidates += [
        t for i, v in sorted(diff.items()) if v and (t := built_on(i, up, max_group)) and len(t) > 1
    ]
    best = None
    for group in candidates:
        delta = need / diff[group[0]]  # > 0 raises a BPE token, < 0 lowers a Viterbi one
        affected = index.affected(group, delta, scores)
        # the first best candidate wins, and only a gain > 0 is kept: a candidate that cannot beat both is
        # dropped as soon as that is certain
        beat = best[0] if best else 0
        gain = change_gain(index, group, delta, scores, affected, beat)
        if gain is not None and guards is not None:
            gain -= guards.loss(group, delta, scores)
            if gain <= beat:
                guards.outweighed, gain = guards.outweighed + 1, None
        if gain is not None:
            best = (gain, group, delta, affected)
    if best:
        index.apply(best[1], best[2], scores, best[3])
        return True
    return False


def change_gain(index, group, delta, scores, affected, beat):
    """Net example weight fixed by moving the tokens of group by delta, or None once it cannot exceed beat
    (the scores are restored). The wrong target examples go first (each can only add), then the right ones
    (each can only subtract); a wrong example that is no target (a guard: index.targets) counts nothing."""
    old = [scores[i] for i in group]
    for i in group:
        scores[i] += delta
    affected = affected.tolist()
    targets = index.targets
    wrong = [h for h in affected if not index.right[h] and (targets is None or targets[h])]
    todo = wrong + [h for h in affected if index.right[h]]
    gain, chance = 0, sum(index.weights[h] for h in wrong)
    for h in todo:
        if gain + chance <= beat:
            gain = None
            break
        now = is_right(viterbi(index.lats[h], scores), index.labels[h])
        if index.right[h]:
            gain -= index.weights[h] * (not now)
        else:
            chance -= index.weights[h]
            gain += index.weights[h] * now
    if gain is not None and gain <= beat:
        gain = None
    for i, x in zip(group, old):
        scores[i] = x
    return gain
