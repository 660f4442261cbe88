"""The run split (lib/runsplit.py): BPE traces as tokenizers' BPE merges, cuts only where BPE cuts, and a
regex that tokenizers.js executes as Oniguruma does (no construct outside their common subset)."""

import collections
import itertools
import json
import random
import re

import pytest

from lib.runsplit import bpe_trace, build_run_split, run_units
from lib.tokenizer import EOT, piece_bytes, to_byte_level


def vocab_merges(gpt2_bpe):
    vocab = {s: i for s, i in gpt2_bpe.get_vocab().items() if s != EOT}
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
        for m in json.loads(gpt2_bpe.to_str())["model"]["merges"]
    ]
    return vocab, merges


def model_alone(tokenizer):
    from tokenizers import Tokenizer

    t = Tokenizer.from_str(tokenizer.to_str())
    t.normalizer = t.pre_tokenizer = t.post_processor = None
    return t


@pytest.fixture(scope="module")
def split(gpt2_bpe):
    vocab, merges = vocab_merges(gpt2_bpe)
    return build_run_split(model_alone(gpt2_bpe), vocab, merges, max_len=96)


@pytest.fixture(scope="module")
def shipped(split):
    """GPT-2's ByteLevel pre-tokenizer followed by the run split, as 04 ships it."""
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence(
        [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), split.stage()]
    )


def test_bpe_trace_segments_like_tokenizers(gpt2_bpe):
    vocab, merges = vocab_merges(gpt2_bpe)
    ranks = {m: r for r, m in enumerate(merges)}
    rng = random.Random(0)
    pool = sorted(vocab)
    words = [rng.choice(pool) + rng.choice(pool) + rng.choice(pool) for _ in range(3000)] + [
        "-" * 19,
        "Ġ" + "=" * 33,
    ]
    for w, e in zip(words, model_alone(gpt2_bpe).encode_batch(words)):
        assert bpe_trace(w, ranks)[0] == e.tokens, w
    _, left, right = bpe_trace("-" * 19, ranks)
    assert (
        left[0][0] == "-"
        and left[-1] == ("-" * 16, float("inf"))
        and right[-1] == ("---", float("inf"))
    )


def test_run_split_cuts_only_where_bpe_cuts(shipped, gpt2_bpe):
    """Every run character x run lengths 1..24 and around periods x every neighbour that can merge across
    the run's edge (a merge (A, B) crosses it only if A ends with the left neighbour and B starts with the
    run; likewise on the right): as single characters for every length, as the whole token A or B for
    short lengths. Other neighbours cannot cross, so a sample of them is enough. The shipped pre-tokenizer
    (ByteLevel, then the run split) never cuts inside a token of GPT-2's BPE of the text."""
    vocab, merges = vocab_merges(gpt2_bpe)
    units = run_units(vocab)
    assert "-" in units and "ãħĭ" in units and "âĢĶ" in units  # '-', 'ㅋ', '—'
    lefts, rights = collections.defaultdict(set), collections.defaultdict(set)
    for a, b in merges:
        for u in units:
            if b.startswith(u[0]) and not a.endswith(u):
                lefts[u].add(a)
            if a.endswith(u[-1]) and not b.startswith(u):
                rights[u].add(b)
    sample = ["", "Ġ", "a", "(", "1", ")", "Ã©", "ĊĠ", "ĊĊ", "'", "ĠĠ"]
    lengths = list(range(1, 25)) + [31, 32, 33, 47, 48, 49, 63, 64, 65, 97, 129]
    texts = set()
    for u in units:
        left_chars = {a[-1] for a in lefts[u]} | set(sample)
        right_chars = {b[0] for b in rights[u]} | set(sample)
        for n in lengths:
            r = u * n
            texts.update(L + r for L in left_chars)
            texts.update(r + R for R in right_chars)
            texts.update(L + r + R for L in sample for R in sample)
            if n <= 5 or n in (8, 9, 16, 17, 32, 33):
                texts.update(a + r for a in lefts[u])
                texts.update(r + b for b in rights[u])
    raw = set()
    for (
        t
    ) in texts:  # byte-level strings -> text; neighbours that are parts of a character are left out
        try:
            raw.add(piece_bytes(t).decode("utf-8"))
        except UnicodeDecodeError:
            pass
    raw = sorted(raw) + [
        "\n" * n + " " * k + x for n in range(1, 12) for k in range(4) for x in ("", "x", "##")
    ]
    raw += [
        " \n\n\n x",
        "\r\n\r\n\n\n\t",
        "a\n\n---",
        "a \n ----",
        "__'s",
        "x'sss",
        "''''s",
        "#'''re",
        "b'SSND'",
    ]
    cut = 0
    for text, enc in zip(raw, gpt2_bpe.encode_batch(raw, add_special_tokens=False)):
        pieces = [w for w, _ in shipped.pre_tokenize_str(text)]
        assert "".join(pieces) == to_byte_level(text)
        cuts = {0} | set(itertools.accumulate(len(t) for t in enc.tokens))
        assert set(itertools.accumulate(len(p) for p in pieces)) <= cuts, (text, pieces, enc.tokens)
        cut += len(pieces) > len(gpt2_bpe.pre_tokenizer.pre_tokenize_str(text))
    assert cut > len(raw) // 4  # and it does cut inside pre-tokens


def test_runs_alone_are_cut_into_bpe_tokens(split, gpt2_bpe):
    """A pre-token that is one run ('#####', '\\n\\n\\n') is cut into exactly BPE's tokens: Viterbi is left
    no tie to break."""
    vocab, _ = vocab_merges(gpt2_bpe)
    bpe = model_alone(gpt2_bpe)
    words = [u * n for u in run_units(vocab) for n in (2, 3, 5, 9, 17, 40, 100, 200)] + [
        "Ċ" * n for n in range(1, 9)
    ]
    for w, e in zip(words, bpe.encode_batch(words)):
        assert split.pieces(w) == e.tokens, w


# Constructs outside what Oniguruma and JavaScript u-mode regexes agree on (tokenizers.js's README): \G,
# atomic groups, possessive quantifiers, \A \z \Z ^ $ . (rewritten with other meanings), class intersection,
# and a backreference inside a lookbehind (JavaScript reads lookbehinds right to left).
UNPORTABLE = {
    "\\G": r"\\G",
    "atomic group": r"\(\?>",
    "possessive quantifier": r"(?<!\\)[*+?}]\+",
    "\\A \\z \\Z": r"\\[AzZ]",
    "^ or $": r"(?<!\\)[\^$](?<!\[\^)",
}


def lookbehinds(pattern):
    """The bodies of the lookbehinds of a regex: lookbehinds("a(?<=b(c))") == ["b(c)"]."""
    out, i = [], 0
    while (i := pattern.find("(?<", i)) != -1:
        if pattern[i + 3] in "=!":
            depth, j = 0, i
            while True:
                if pattern[j] == "\\":
                    j += 2
                    continue
                if pattern[j] == "[":
                    j = pattern.index("]", j + 1) + 1
                    continue
                depth += {"(": 1, ")": -1}.get(pattern[j], 0)
                j += 1
                if depth == 0:
                    break
            out.append(pattern[i + 4 : j - 1])
        i += 3
    return out


def outside_classes(pattern):
    """The regex with its character classes blanked out (their contents are literals)."""
    return re.sub(r"\[(?:\\.|[^\]\\])*\]", "[]", pattern)


def test_the_split_uses_only_portable_regex(split):
    bare = outside_classes(split.pattern)
    for name, rx in UNPORTABLE.items():
        assert not re.search(rx, bare), f"the run split uses {name}"
    assert "." not in re.sub(r"\\.", "", bare), "the run split uses '.'"
    assert "&&" not in split.pattern, "the run split uses a class intersection"
    assert not any(re.search(r"\\[1-9]", body) for body in lookbehinds(split.pattern)), (
        "backreference in a lookbehind"
    )
    assert lookbehinds("a(?<=b(c))(?<![x)])") == ["b(c)", "[x)]"]


def test_unportable_constructs_are_caught():
    """The check above fails on each construct it names (it could not pass a \\G split otherwise)."""
    for bad in ("x(?<=\\Gy)", "(?>ab)", "a++", "a{2}+", "\\Ax", "^x"):
        assert any(re.search(rx, outside_classes(bad)) for rx in UNPORTABLE.values()), bad
