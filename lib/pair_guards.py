"""Pair guards: what a repair would break beyond the examples.

A repair moves a token's score in every string that holds it, and unseen text holds it where no example
does: lowering 'Ġcm' to fix one train piece can turn ' cmode' and ' cmake' wrong, which the closed form had
right. So each token a repair would move is also tried on the strings it makes with the most frequent
train tokens on either side (one GPT-2 pre-token each, cut by the run split, labelled by BPE, built the
first time the token is tried); each one the change turns wrong counts against it.

    >>> guards = pair_guards(bpe, splitter, examples, cfg)
    >>> guards.loss([bpe.vocab["Ġcm"]], -1e9, scores)     # guard strings turned wrong, times the weight
"""

import itertools

from lib.examples import frequent_tokens, split_examples
from lib.gpt2_bpe import bare, pre_tokenizer_gpt2
from lib.tokenizer import piece_bytes
from lib.unigram import is_right, lattice, viterbi


def pair_guards(bpe, splitter, examples, cfg):
    """PairGuards over the guard_partners most frequent train tokens, or None when guard_partners is 0.
    examples: lib.examples.Examples."""
    if not cfg["guard_partners"]:
        return None
    partners = frequent_tokens(examples.items, examples.in_train, cfg["guard_partners"])
    keys = {(p, y) for p, y, _ in examples.items}
    return PairGuards(bpe, partners, splitter, keys, cfg["guard_weight"])


class PairGuards:
    """Guard strings per token: token + partner and partner + token, for each partner (frequent_tokens),
    kept when GPT-2's pre-tokenizer leaves them whole and they are no example already (those count anyway).

        >>> guards = PairGuards(bpe, partners, splitter, example_keys, weight=1)
        >>> guards.loss([bpe.vocab["Ġcm"]], -1e9, scores)  # ' cmode', ' cmake', ... turned wrong, times weight
    """

    def __init__(self, bpe, partners, splitter, example_keys, weight):
        self.original, self.vocab, self.token_strings = (
            bare(bpe.original),
            bpe.vocab,
            bpe.token_strings,
        )
        self.splitter, self.example_keys, self.weight = splitter, example_keys, weight
        self.max_len = bpe.max_len
        self.partners = [t for t in map(self.text, partners) if t]
        self.pre_tokenizer = pre_tokenizer_gpt2()
        self.cache, self.tried, self.outweighed = {}, 0, 0
        self.pairs = {}  # (a, b) -> the guard strings of a + b (joined)

    def text(self, i):
        try:
            return piece_bytes(self.token_strings[i]).decode("utf-8")
        except (
            KeyError,
            UnicodeDecodeError,
        ):  # a token that cuts a character pairs with nothing whole
            return None

    def strings(self, i):
        """[(lattice, BPE label, piece)] of token i's guard strings (built once)."""
        if i not in self.cache:
            a, words = self.text(i), set()
            for b in self.partners if a else []:
                for joined in (a + b, b + a):
                    cut = self.pre_tokenizer.pre_tokenize_str(joined)
                    if len(cut) == 1:
                        words.add(cut[0][0])
            words = sorted(words)
            ids = [tuple(e.ids) for e in self.original.encode_batch(words)] if words else []
            pieces, _ = split_examples(
                words, ids, [1] * len(words), self.splitter, self.token_strings, progress=False
            )
            self.cache[i] = [
                (lattice(p, self.vocab, self.max_len), y, p)
                for p, y in sorted(pieces)
                if (p, y) not in self.example_keys
            ]
        return self.cache[i]

    def joined(self, tokens):
        """[(lattice, BPE label, piece)] of the strings a + b, for a and b in tokens (one change's moved
        tokens), that GPT-2's pre-tokenizer leaves whole and that are no example: where a wide change meets
        itself ('200' + '430' when both move). Built once per pair."""
        words = {}
        for a, b in itertools.product(tokens, repeat=2):
            if (a, b) not in self.pairs:
                self.pairs[(a, b)] = []
                ta, tb = self.text(a), self.text(b)
                cut = self.pre_tokenizer.pre_tokenize_str(ta + tb) if ta and tb else []
                if len(cut) == 1:
                    words[(a, b)] = cut[0][0]
        if words:
            labels = [tuple(e.ids) for e in self.original.encode_batch(list(words.values()))]
            for (key, w), y in zip(words.items(), labels):
                pieces, _ = split_examples(
                    [w], [y], [1], self.splitter, self.token_strings, progress=False
                )
                self.pairs[key] = [
                    (lattice(p, self.vocab, self.max_len), q, p)
                    for p, q in sorted(pieces)
                    if (p, q) not in self.example_keys
                ]
        return [g for key in itertools.product(tokens, repeat=2) for g in self.pairs[key]]

    def loss(self, group, delta, scores):
        """weight x the guard strings of group's tokens that moving them by delta turns from right to wrong."""
        strings = [g for i in group for g in self.strings(i)]
        before = [is_right(viterbi(lat, scores), y) for lat, y, _ in strings]
        old = [scores[i] for i in group]
        for i in group:
            scores[i] += delta
        broken = sum(
            b and not is_right(viterbi(lat, scores), y) for (lat, y, _), b in zip(strings, before)
        )
        for i, x in zip(group, old):
            scores[i] = x
        self.tried += 1
        return self.weight * broken

    def summary(self):
        return {
            "partners": len(self.partners),
            "tokens": len(self.cache),
            "strings": sum(map(len, self.cache.values())),
            "changes_tried": self.tried,
            "changes_outweighed": self.outweighed,
        }
