"""Unigram lattices and Viterbi exactly as `tokenizers` runs them, and the index that lets 04's repair skip
the examples a score change cannot affect.

    >>> lat = lattice("Ġhello", vocab, max_len)          # lat[s] = [(end, token id), ...]
    >>> viterbi(lat, scores)                              # the ids HF's Unigram emits (ties: earliest start)
    >>> index = RepairIndex(lats, labels, weights, lengths, token_len); index.refresh_all(scores)
    >>> index.affected([i], delta, scores)                # the only examples whose Viterbi output may change

Why the skip is exact. Scores are float64 and Viterbi keeps the first best path it meets (a strict `>`);
float addition is monotone, so a path whose float score stays strictly above every other path's is kept.
A forward-backward pass gives, per example, the gap of every lattice edge (how far the best path through
it is below the best path); every other path uses an edge off the current path. Then:
  - lowering token i by d: the current path loses d * (its uses of i), the others lose >= 0; a path not
    using i is kept, and one using it is kept while its runner-up gap exceeds that loss;
  - raising the tokens G by d: a path holds no more of them than the lattice has edges of them (nor more
    than len(word) // the shortest), so a path through an edge of G off the current path gains at most
    d * (that - the current path's uses of G) over it, and any other path gains no more than it does;
    for one token, a path through j of its edges off the current path is at least the j-th smallest of
    their gaps below it and gains d * j over it (the test uses the smallest and the second smallest).
Each test allows a bound on float64 rounding. Later changes that skip an example only shrink its gaps by
at most the amount charged to it (drift); a re-run example gets exact gaps again.
"""

import collections
import itertools
import json

import numpy as np

# float64 rounding: a sum of n terms of magnitude <= m, in any order, is within n * n * 2**-53 * m of the
# real sum; the gap test allows this for the best path and for the path it is compared with, 4x over.
ROUNDING = 8 * 2.0**-53


def as_tokenizers_reads(values, until_stable=False):
    """The float64s tokenizers holds after reading these scores from a tokenizer.json: its JSON float parser
    can be one ulp off, which flips exact ties. until_stable: written and read back until nothing moves
    (04 learns on scores that survive any number of saves and loads).

        >>> as_tokenizers_reads([0.1, -2.5])
        [0.1, -2.5]
    """
    from tokenizers import Tokenizer

    values = [float(v) for v in values]
    for _ in range(5 if until_stable else 1):
        vocab = [[f"{i}", v] for i, v in enumerate(values)]
        blob = {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [],
            "normalizer": None,
            "pre_tokenizer": None,
            "post_processor": None,
            "decoder": None,
            "model": {"type": "Unigram", "unk_id": None, "vocab": vocab, "byte_fallback": False},
        }
        if not vocab:
            return []
        back = [
            float(s)
            for _, s in json.loads(Tokenizer.from_str(json.dumps(blob)).to_str())["model"]["vocab"]
        ]
        if back == values:
            break
        values = back
    return values


def lattice(word, vocab, max_len):
    """lat[s] = [(end, id)] for every vocab string word[s:end], ends in increasing order."""
    return [
        [
            (e, vocab[word[s:e]])
            for e in range(s + 1, min(len(word), s + max_len) + 1)
            if word[s:e] in vocab
        ]
        for s in range(len(word))
    ]


def forward(lat, scores):
    """(best score to each position, the (start, id) of the last piece there): HF's Unigram order, where of
    equal scores the first met wins (earliest start of the last piece)."""
    n = len(lat)
    best = [0.0] + [None] * n
    back = [None] * (n + 1)
    for s in range(n):
        b = best[s]
        for e, i in lat[s]:
            c = scores[i] + b
            if best[e] is None or c > best[e]:
                best[e] = c
                back[e] = (s, i)
    return best, back


def viterbi(lat, scores):
    """HF's Unigram Viterbi: the best-scoring path; of equal ones, the first met (earliest start of the last piece)."""
    n = len(lat)
    best, back = forward(lat, scores)
    out, e = [], n
    while e > 0:
        s, i = back[e]
        out.append(i)
        e = s
    return out[::-1]


def forward_backward(lat, scores):
    """(Viterbi path as viterbi() gives it, its score, {token: [smallest, second smallest] gap of its edges
    off the path}, the smallest gap of any edge off the path). The gap of an edge: the best score minus that of the best
    path through the edge; every other path uses some edge off the path, so it is at least this far below."""
    n = len(lat)
    best, back = forward(lat, scores)
    path, on, e = [], set(), n
    while e > 0:
        s, i = back[e]
        path.append(i)
        on.add((s, e))
        e = s
    after = [0.0] * (n + 1)  # best score from each position to the end
    for s in range(n - 1, -1, -1):
        after[s] = max(scores[i] + after[e] for e, i in lat[s])
    top, off, runner = best[n], {}, np.inf
    for s in range(n):
        b = best[s]
        for e, i in lat[s]:
            if (s, e) not in on:
                g = top - (b + scores[i] + after[e])
                two = off.get(i)
                if two is None:
                    off[i] = [g, np.inf]
                elif g < two[1]:
                    two[:] = [g, two[0]] if g < two[0] else [two[0], g]
                if g < runner:
                    runner = g
    return path[::-1], top, off, runner


def path_score(ids, scores):
    total = 0.0
    for i in ids:
        total = scores[i] + total
    return total


def is_right(path, label):
    """BPE's segmentation, or a permutation of it (a tie no score can break)."""
    return tuple(path) == label or sorted(path) == sorted(label)


class RepairIndex:
    """For every example: its current Viterbi path, whether it is right, the smallest gap off its path
    (runner) and the drift (how much later raises may have shrunk its gaps since they were computed). For
    every (example, token of its lattice) pair: the token's edges in the lattice (mult), on the path (on),
    and the smallest gap of those off it. Pairs are stored token by token, so a token's examples are one slice."""

    def __init__(self, lats, labels, weights, lengths, token_len):
        self.lats, self.labels, self.weights = lats, labels, weights
        self.token_len = token_len  # characters of each token id
        self.lengths = np.asarray(lengths, dtype=np.int64)
        edges = [collections.Counter(i for row in lat for _, i in row) for lat in lats]
        self.tokens = [tuple(sorted(c)) for c in edges]
        sizes = np.fromiter(map(len, self.tokens), np.int64, len(lats))
        self.ex_ptr = np.concatenate([[0], np.cumsum(sizes)])
        ex_tok = np.fromiter(
            itertools.chain.from_iterable(self.tokens), np.int32, int(self.ex_ptr[-1])
        )
        mult = np.fromiter(
            (c[t] for c, toks in zip(edges, self.tokens) for t in toks),
            np.int32,
            int(self.ex_ptr[-1]),
        )
        del edges
        order = np.argsort(ex_tok, kind="stable")
        self.pair_ex = np.repeat(np.arange(len(lats), dtype=np.int32), sizes)[order]
        self.mult = mult[order]
        self.tok_ptr = np.concatenate(
            [[0], np.cumsum(np.bincount(ex_tok, minlength=len(token_len)))]
        )
        self.pos = np.empty_like(order)  # example-major pair -> its place in the token-major arrays
        self.pos[order] = np.arange(len(order))
        self.gap = np.zeros(len(order))  # smallest gap of the token's edges off the path
        self.gap2 = np.zeros(len(order))  # the second smallest (inf: fewer than two such edges)
        self.on = np.zeros(len(order), dtype=np.int32)
        self.runner = np.zeros(len(lats))
        self.mag = np.zeros(
            len(lats)
        )  # the largest |score| of a token of the lattice (rounding bound)
        self.drift = np.zeros(len(lats))
        self.paths = [()] * len(lats)
        self.right = [False] * len(lats)
        self.targets = None  # the examples a repair may try to fix (04's learn sets it); None: all

    def refresh_all(self, scores, progress=None):
        """refresh() of every example (with a tqdm bar named progress)."""
        from tqdm import tqdm

        ks = range(len(self.lats))
        self.refresh(
            tqdm(ks, desc=progress, unit="ex", mininterval=1, leave=False) if progress else ks,
            scores,
            every=True,
        )

    def refresh_touched(self, tokens, scores, progress=None):
        """refresh() of the examples whose bounds later changes loosened (drift) or that hold a token of
        tokens (scores moved outside apply()); the others are exact already."""
        from tqdm import tqdm

        ks = np.flatnonzero(self.drift > 0)
        if tokens:
            ks = np.union1d(ks, self.pair_ex[self._pairs(tokens)])
        ks = ks.tolist()
        self.refresh(
            tqdm(ks, desc=progress, unit="ex", mininterval=1, leave=False) if progress else ks,
            scores,
        )

    def wrong_weight(self):
        return sum(w for w, r in zip(self.weights, self.right) if not r)

    def refresh(self, ks, scores, every=False):
        """Exact paths, states and gaps for the examples ks (every: all, in order) under the current scores."""
        where, gaps, gaps2, on, done, runners, mags = [], [], [], [], [], [], []
        for k in ks:
            done.append(k)
            path, _, off, runner = forward_backward(self.lats[k], scores)
            self.paths[k] = tuple(path)
            self.right[k] = is_right(path, self.labels[k])
            runners.append(runner)
            mags.append(max(abs(scores[t]) for t in self.tokens[k]))
            used = collections.Counter(path)
            toks = self.tokens[k]
            two = [off.get(t, (np.inf, np.inf)) for t in toks]
            gaps.extend(g for g, _ in two)
            gaps2.extend(g for _, g in two)
            on.extend(used[t] for t in toks)
            if not every:
                where.append(self.pos[self.ex_ptr[k] : self.ex_ptr[k + 1]])
        if done:
            where = self.pos if every else np.concatenate(where)
            self.gap[where] = gaps
            self.gap2[where] = gaps2
            self.on[where] = on
            done = np.asarray(done, dtype=np.int64)
            self.runner[done] = runners
            self.mag[done] = mags
            self.drift[done] = 0.0

    def _pairs(self, group):
        return np.concatenate([np.arange(self.tok_ptr[i], self.tok_ptr[i + 1]) for i in group])

    def _room(self, group, delta, scores):
        """(examples holding a token of group, how far each stays from a change of its Viterbi output when
        group moves by delta: <= 0 may change, > 0 cannot, by the bounds in the module docstring)."""
        pairs = self._pairs(group)
        ex, inv = np.unique(self.pair_ex[pairs], return_inverse=True)
        on = np.bincount(
            inv, weights=self.on[pairs], minlength=len(ex)
        )  # tokens of group on the path
        m = np.maximum(self.mag[ex], max(abs(scores[i] + delta) for i in group))
        slack = ROUNDING * (self.lengths[ex] + 2.0) ** 2 * m
        near = self.runner[ex] - self.drift[ex] - slack  # the path against every other path
        if delta < 0:  # the path loses delta * on; the others lose >= 0
            return ex, np.where(on > 0, near + delta * on * (1 + 1e-9), np.inf), on
        most = np.minimum(
            np.bincount(inv, weights=self.mult[pairs], minlength=len(ex)),
            self.lengths[ex] // min(self.token_len[i] for i in group),
        )
        extra = np.maximum(most - on, 0)  # edges of group a path can hold beyond the current path's
        near = np.where(on > 0, near, np.inf)  # a path with no edge of group off the current one
        if len(group) == 1:
            # a path through j edges of the token off the current path is at least the j-th smallest of
            # their gaps below it, and gains delta * j more: j = 1 against the smallest, j >= 2 the second
            room1 = self.gap[pairs] - self.drift[ex] - slack - delta * (1 + 1e-9)
            room2 = self.gap2[pairs] - self.drift[ex] - slack - delta * extra * (1 + 1e-9)
            return ex, np.minimum(np.minimum(room1, room2), near), extra
        off = np.full(len(ex), np.inf)
        np.minimum.at(off, inv, self.gap[pairs])
        # a path through an edge of group off the current path gains <= delta * extra more than it does
        room = off - self.drift[ex] - slack - delta * extra * (1 + 1e-9)
        return ex, np.minimum(room, near), extra

    def _room_many(self, delta, scores):
        """(examples holding a token of delta {token: change}, the most their Viterbi comparisons can shift,
        how far each stays from a change of its output: <= 0 may change) when every token moves at once: the
        path moves by at most sum |d| * on, any other path by at most sum |d| * mult (its edges of the token)."""
        moved = sorted(delta)
        pairs = self._pairs(moved)
        step = np.repeat(np.abs([delta[t] for t in moved]), np.diff(self.tok_ptr)[moved])
        ex, inv = np.unique(self.pair_ex[pairs], return_inverse=True)
        shift = np.bincount(
            inv, weights=step * (self.mult[pairs] + self.on[pairs]), minlength=len(ex)
        ) * (1 + 1e-9)
        m = np.maximum(self.mag[ex], max(abs(scores[t] + d) for t, d in delta.items()))
        room = (
            self.runner[ex] - self.drift[ex] - ROUNDING * (self.lengths[ex] + 2.0) ** 2 * m - shift
        )
        return ex, shift, room

    def affected_many(self, delta, scores):
        """The examples whose Viterbi output may change when each token t moves by delta[t] at once."""
        ex, _, room = self._room_many(delta, scores)
        return ex[room <= 0]

    def apply_many(self, delta, scores):
        """Move every token t by delta[t] for good: charge the examples skipped with the most their gaps
        can shrink, and refresh those that may change."""
        ex, shift, room = self._room_many(delta, scores)
        self.drift[ex] += shift
        for t, d in delta.items():
            scores[t] += d
        self.mag[ex] = np.maximum(self.mag[ex], max(abs(scores[t]) for t in delta))
        self.refresh(ex[room <= 0].tolist(), scores)

    def affected(self, group, delta, scores):
        """The examples whose Viterbi output may change when the tokens of group move by delta, those closest
        to a change first."""
        ex, room, _ = self._room(group, delta, scores)
        hit = room <= 0
        return ex[hit][np.argsort(room[hit], kind="stable")]

    def apply(self, group, delta, scores, affected):
        """Move group by delta for good: charge the examples skipped with the most their gaps can shrink
        (a raise: delta * (most - on); a lowering: |delta| * on), and refresh the affected."""
        ex, _, count = self._room(group, delta, scores)
        self.drift[ex] += abs(delta) * count * (1 + 1e-9)
        for i in group:
            scores[i] += delta
        self.mag[ex] = np.maximum(self.mag[ex], max(abs(scores[i]) for i in group))
        self.refresh(affected.tolist(), scores)
