"""05's greedy selection: strings picked by their marginal saving, re-estimated lazily on the Unigram
lattice of each train pre-token under the scores 06 gives (lib/unigram.py, lib/ivr.new_piece_scores).

    >>> lattices = Lattices(vocab, scores, strings, new_piece_values(strings, vocab, scores, 1e-12))
    >>> greedy = Greedy(lattices, corpus, contains_index(corpus.ptoks, strings), weights, spread)
    >>> picks, not_positive, heap = greedy.run(forced, estimate, n_target)
"""

import bisect
import heapq
from collections import Counter, defaultdict

from tqdm import tqdm

from lib.ivr import bonus_per_saved_token, contained, new_piece_scores
from lib.log import log
from lib.phases import phase
from lib.tokenizer import VOCAB_SIZE
from lib.unigram import as_tokenizers_reads, lattice, viterbi


class Lattices:
    """The Unigram lattice of each train pre-token (lib/unigram's lattice and Viterbi, as tokenizers runs
    them) under the scores 06 gives: the old pieces less the ids given away, and the new pieces accepted so far.

    Candidate new string j has the provisional id VOCAB_SIZE + j, so its edges can join any lattice; `scores`
    holds the old scores, then the candidates' (lib/ivr.new_piece_scores, as tokenizers reads them back).
    A lattice is built on first use and kept: accepted new pieces are added to it.
    """

    def __init__(self, vocab, scores, strings, new_scores):
        self.vocab, self.max_len = vocab, max(map(len, vocab))
        self.scores = list(scores) + list(new_scores)
        self.strings = list(strings)  # provisional id - VOCAB_SIZE -> string
        self.new_id = {c: VOCAB_SIZE + j for j, c in enumerate(self.strings)}
        self._lats = {}

    def of(self, k, text):
        lat = self._lats.get(k)
        if lat is None:
            lat = self._lats[k] = lattice(text, self.vocab, self.max_len)
        return lat

    def tokens(self, k, text, c=None, starts=()):
        """Tokens of train pre-token k on its best path; with the new piece c at `starts` for this call only."""
        lat = self.of(k, text)
        edges = [(a, (a + len(c), self.new_id[c])) for a in starts]
        for a, edge in edges:
            bisect.insort(lat[a], edge)
        n = len(viterbi(lat, self.scores))
        for a, edge in edges:
            lat[a].remove(edge)
        return n

    def add(self, k, text, c, starts):
        """The new piece c joins pre-token k's lattice for good, at `starts`."""
        lat, i = self.of(k, text), self.new_id[c]
        for a in starts:
            bisect.insort(lat[a], (a + len(c), i))

    def best(self, k, text):
        """(tokens on the best path of pre-token k, the new strings on it)."""
        ids = viterbi(self.of(k, text), self.scores)
        return len(ids), [self.strings[i - VOCAB_SIZE] for i in ids if i >= VOCAB_SIZE]


def occurrences(text, sub):
    """Start positions of sub in text, overlapping ones included."""
    out, i = [], text.find(sub)
    while i >= 0:
        out.append(i)
        i = text.find(sub, i + 1)
    return out


def new_piece_values(strings, vocab, scores, new_piece_bonus):
    """The score 06 gives each new string (lib/ivr.new_piece_scores), as tokenizers reads it back from tokenizer.json."""
    phase("new piece scores")
    bonus, _ = bonus_per_saved_token(scores, new_piece_bonus)
    return as_tokenizers_reads(new_piece_scores(strings, vocab, scores, bonus))


def contains_index(ptoks, strings):
    """string -> the train pre-tokens (by position) that contain it anywhere, not only on token boundaries."""
    phase("which pre-tokens contain each candidate")
    index = defaultdict(list)
    for k, found in enumerate(contained(tqdm(ptoks, desc="index", unit="pre-token"), strings)):
        for sub in found:
            index[sub].append(k)
    return index


class Greedy:
    """The state of the greedy selection: each train pre-token's lattice (with the new pieces accepted so
    far), its current token count, and when it last changed, so an estimate whose pre-tokens all stayed
    the same is known to be exact without a new Viterbi. Candidates are ranked by their worth: the saving
    with each pre-token's occurrences weighted by `weights` (rank_weights), times the string's document
    spread (document_spread; 1 for a string not in it); a pick records its real saving."""

    def __init__(self, lattices, corpus, index, weights, spread):
        self.lattices, self.corpus, self.index, self.weights, self.spread = (
            lattices,
            corpus,
            index,
            weights,
            spread,
        )
        self.cur_len = {}  # k -> tokens of pre-token k with the pieces accepted so far
        self.changed_at = {}  # k -> the version whose pick last changed pre-token k
        self.version = 0  # number of accepted strings
        self.evaluated = {}  # string -> (worth, gain, lens) at the current version
        self.drift = (
            Counter()
        )  # occurrences where the estimator's old path differs in length from 04's
        self.n_evaluated = self.n_exact = 0

    def current(self, k):
        if k not in self.cur_len:  # first visit: the lattice of k has no new piece yet
            n = self.cur_len[k] = self.lattices.tokens(k, self.corpus.ptoks[k])
            self.drift["checked"] += self.corpus.pfreq[k]
            self.drift["differ"] += self.corpus.pfreq[k] * (n != self.corpus.seg_len[k])
        return self.cur_len[k]

    def evaluate(self, c):
        """(worth of c now, its saving on train now, {k: (tokens with c, where c starts in pre-token k)})."""
        if c in self.evaluated:
            return self.evaluated[c]
        ptoks, pfreq, weights = self.corpus.ptoks, self.corpus.pfreq, self.weights
        worth, gain, lens = 0, 0, {}
        for k in self.index.get(c, ()):
            p = ptoks[k]
            starts = occurrences(p, c)
            current = self.current(k)
            n = self.lattices.tokens(k, p, c, starts)
            gain += pfreq[k] * (current - n)
            worth += weights[k] * (current - n)
            lens[k] = (n, starts)
        worth *= self.spread.get(c, 1.0)
        self.evaluated[c] = (worth, gain, lens)
        return worth, gain, lens

    def accept(self, c, lens):
        self.version += 1
        for k, (n, starts) in lens.items():
            self.lattices.add(k, self.corpus.ptoks[k], c, starts)
            self.cur_len[k] = n
            self.changed_at[k] = self.version
        self.evaluated.clear()

    def still_exact(self, c, seen_at):
        """No pre-token holding c changed since c was estimated at version seen_at."""
        changed_at = self.changed_at
        return seen_at >= 0 and all(changed_at.get(k, 0) <= seen_at for k in self.index.get(c, ()))

    def run(self, forced, estimate, n_target):
        """Forced strings first, then the best marginal worth each time; returns the picks and the leftovers."""
        phase("greedy selection")
        picks, not_positive = (
            [],
            [],
        )  # picks: (string, marginal saving at pick time, "force" | "greedy")
        for c in forced:
            _, gain, lens = self.evaluate(c)
            self.accept(c, lens)
            picks.append((c, gain, "force"))
        heap = [(-est, c, -1) for c, est in estimate.items() if c not in forced]
        heapq.heapify(heap)
        bar = tqdm(total=n_target, initial=len(picks), desc="select", unit="id")
        while heap and len(picks) < n_target:
            neg, c, seen_at = heapq.heappop(heap)
            if seen_at == self.version:  # fresh: nothing was picked since it was estimated
                worth, gain, lens = self.evaluate(c)
                if worth <= 0:
                    not_positive.append(c)
                    continue
                self.accept(c, lens)
                picks.append((c, gain, "greedy"))
                bar.update(1)
                continue
            if self.still_exact(c, seen_at):  # the same estimate, now known to be fresh
                self.n_exact += 1
                heapq.heappush(heap, (neg, c, self.version))
                continue
            worth = self.evaluate(c)[0]
            self.n_evaluated += 1
            if worth <= 0:
                not_positive.append(c)
                continue
            heapq.heappush(heap, (-worth, c, self.version))
        bar.close()
        if len(picks) < n_target:
            log.warning(
                f"warning: only {len(picks):,} strings save anything; {n_target - len(picks):,} ids stay as they "
                f"are (lower min_frequency or raise max_new_bytes for more)"
            )
        return picks, not_positive, heap

    def predict(self, new_set):
        """Tokens on train with the picks, and how often each new string is emitted: the final segmentations."""
        phase("prediction on the train split")
        emitted, tokens_after = Counter(), self.corpus.tokens_before
        touched = sorted({k for c in new_set for k in self.index.get(c, ())})
        for k in tqdm(touched, desc="predict", unit="pre-token"):
            n, new_pieces = self.lattices.best(k, self.corpus.ptoks[k])
            tokens_after += self.corpus.pfreq[k] * (n - self.corpus.seg_len[k])
            for piece in new_pieces:
                emitted[piece] += self.corpus.pfreq[k]
        return tokens_after, emitted
