"""GPT-2's BPE of many texts, by the compiled `gigatoken` or by `tokenizers` (the reference), with one
interface; and the ids written as text lines (03's bpe_token_id_sequences.txt).

    >>> enc = Encoder("gigatoken", "artifacts/tokenizers/original/tokenizer.json", reference)
    >>> flat, lengths = enc.encode(["hello world", "x"])
    >>> id_lines(flat, lengths)
    b'31373 995\\n87\\n'
"""

import collections
import os

import numpy as np

from lib.log import die
from lib.tokenizer import VOCAB_SIZE, piece_bytes


class Encoder:
    """GPT-2 BPE by `gigatoken` (compiled) or `tokenizers` (the reference), with one interface.

    >>> enc = Encoder("gigatoken", "artifacts/tokenizers/original/tokenizer.json")
    >>> enc.encode(["hello world", "x"])   # (all ids back to back, each text's number of ids)
    (array([31373, 995, 87]), array([2, 1]))
    >>> enc.pretokens("hello world")       # raw UTF-8 pre-tokens, with their counts
    [(b'hello', 1), (b' world', 1)]
    """

    def __init__(self, name, tokenizer_json, reference):
        self.name, self.reference = name, reference
        if name == "gigatoken":
            try:
                import gigatoken
                from gigatoken.gigatoken_rs import pretokenized_counts
            except ImportError:
                die(
                    "package gigatoken is missing: run `make venv`, or set encoder: tokenizers in configs/analyze.yaml"
                )
            self.gigatoken = gigatoken.Tokenizer(str(tokenizer_json))
            self.pretokenized_counts = pretokenized_counts
        self.byte_level = reference.pre_tokenizer
        self.read_apart = self.chars_read_apart() if name == "gigatoken" else None

    def encode(self, texts, parallel=False):
        """(int64 ids of every text back to back, int64 number of ids per text)."""
        if self.name == "gigatoken":
            import awkward as ak

            ids = self.gigatoken.encode_batch(texts, parallel=parallel)
            return ak.flatten(ids).to_numpy().astype(np.int64), ak.num(ids).to_numpy().astype(
                np.int64
            )
        encoded = [e.ids for e in self.reference.encode_batch_fast(texts, add_special_tokens=False)]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        flat = np.fromiter(
            (i for ids in encoded for i in ids), dtype=np.int64, count=int(lengths.sum())
        )
        return flat, lengths

    def chars_read_apart(self):
        """The characters that gigatoken's pre-token counter classes otherwise than tokenizers' regex:
        characters newer than this Python's Unicode tables (U+A7CF, U+16EBB, ...), which one library reads as
        letters and the other not (its encode agrees with tokenizers). Found by pre-tokenizing "q<c>1" with both
        for every unassigned character of planes 0-3; a text holding one is pre-tokenized by tokenizers."""
        import itertools
        import unicodedata

        from gigatoken.gigatoken_rs import pretokenizer

        chars = [chr(c) for c in range(0x80, 0x40000) if unicodedata.category(chr(c)) == "Cn"]
        probe = "".join(f"q{c}1\n" for c in chars)
        ends = {end for _, (_, end) in self.byte_level.pre_tokenize_str(probe)}
        stderr = os.dup(2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # its timing lines
        try:
            ends_here = set(
                itertools.accumulate(
                    len(w.decode("utf-8")) for w in pretokenizer(probe.encode("utf-8"))
                )
            )
        finally:
            os.dup2(stderr, 2)
        apart = sorted({chars[(end - 1) // 4] for end in ends ^ ends_here})
        return frozenset(apart)

    def pretokens(self, text):
        """[(raw pre-token bytes, count)] of a text without the special token; each pre-token once."""
        if self.name == "gigatoken" and (text.isascii() or self.read_apart.isdisjoint(text)):
            return self.pretokenized_counts(text.encode("utf-8"))
        words = collections.Counter(w for w, _ in self.byte_level.pre_tokenize_str(text))
        return [(piece_bytes(w), n) for w, n in words.items()]

    def pretoken_list(self, text):
        """The pre-tokens of a text without the special token, in order, as raw bytes (for the checks)."""
        return [piece_bytes(w) for w, _ in self.byte_level.pre_tokenize_str(text)]


# -----------------------------------------------------------------------------
# the lines of bpe_token_id_sequences.txt

W = 8  # bytes per id in the digit table: up to 5 digits and the separator, padded
_DIGITS = np.zeros((VOCAB_SIZE, W), dtype=np.uint8)
_KEEP = np.zeros((VOCAB_SIZE, W), dtype=bool)
for _i in range(VOCAB_SIZE):
    _b = f"{_i} ".encode()
    _DIGITS[_i, : len(_b)] = list(_b)
    _KEEP[_i, : len(_b)] = True
_DIGITS64, _KEEP64 = _DIGITS.view(np.uint64).ravel(), _KEEP.view(np.uint64).ravel()
_WIDTH = _KEEP.sum(axis=1)


def id_lines(flat, lengths):
    """The text lines of documents' ids, one document a line, in numpy: each id's digits and space come from a
    table as one 8-byte word, the padding is dropped, and each document's last space becomes a newline.

        >>> id_lines(np.array([464, 3290, 7]), np.array([2, 1]))
        b'464 3290\\n7\\n'
    """
    if (lengths == 0).any():  # an empty document (02 never writes one) still gets its (empty) line
        starts = np.concatenate([[0], np.cumsum(lengths)])
        return b"".join(
            id_lines(flat[a:b], lengths[k : k + 1]) if b > a else b"\n"
            for k, (a, b) in enumerate(zip(starts[:-1].tolist(), starts[1:].tolist()))
        )
    out = _DIGITS64[flat].view(np.uint8)[_KEEP64[flat].view(bool)]
    out[np.cumsum(_WIDTH[flat])[np.cumsum(lengths) - 1] - 1] = ord("\n")
    return out.tobytes()
