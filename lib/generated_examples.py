"""Generated examples: BPE labels any string, so the learning need not stop at the corpus's words.

What scores learned on the corpus alone get wrong on unseen text is ordinary: identifiers made of word
parts (` typeDefault`, `toknum`), acronyms (`TLSEXT`, ` IEEEFloat`), numbers (` 4954`), other scripts,
symbol pairs. Strings of those shapes are generated from the vocabulary alone (no text is read, so nothing
the report calls out of domain is learned on), cut by GPT-2's pre-tokenizer, and labelled by GPT-2's BPE.

    >>> texts = generated_texts(vocab, 1000, seed=0) + number_texts(4)
    >>> words, ids = generated_labels(texts, original)
"""

import collections
import itertools
import random

from tqdm import tqdm

from lib.gpt2_bpe import bare, pre_tokenizer_gpt2
from lib.schema import GENERATED_KINDS
from lib.tokenizer import piece_bytes


def word_parts(vocab):
    """({length: ASCII letter parts (lower case)}, non-ASCII letter parts, decodable token texts) of the
    vocabulary, leading spaces stripped: the pieces generated strings are made of.

        >>> parts, other, texts = word_parts(vocab); parts[3][:2]
        ['aaa', 'aab']
    """
    latin, other, texts = collections.defaultdict(set), set(), []
    for s in sorted(vocab):
        try:
            text = piece_bytes(s).decode("utf-8")
        except UnicodeDecodeError:
            continue
        texts.append(text)
        w = text[1:] if text.startswith(" ") else text
        if w.isascii() and w.isalpha() and len(w) <= 10:
            latin[len(w)].add(w.lower())
        elif w.isalpha() and not w.isascii():
            other.add(w)
    return {n: sorted(v) for n, v in sorted(latin.items())}, sorted(other), texts


# English suffixes: a word part plus these makes the unseen inflections ('walking', 'players', 'creation')
SUFFIXES = [
    "s",
    "es",
    "ed",
    "ing",
    "er",
    "ers",
    "ly",
    "ion",
    "ions",
    "ation",
    "ations",
    "ment",
    "ness",
    "able",
    "al",
    "ity",
    "ive",
    "ize",
    "ized",
    "ist",
    "ism",
    "ful",
    "less",
    "ous",
]


def generated_texts(vocab, n, seed, kinds=GENERATED_KINDS):
    """n strings, n / len(kinds) of each kind (GENERATED_KINDS), the same for the same arguments. Word parts
    are drawn by length first (uniform 1..10), so short parts ('tok', 'num') are as common as long ones.

        lower ' toknum'  suffixed ' walking'  camel 'typeDefault'  capital ' DataLoader'  upper 'TLSEXT'
        upper_words ' RECOVERY'  digits ' 4954'  digit_runs '70000001'  vocab_pair two tokens joined ('┌' + '───')
        script 'данных' / ' 注释'
    """
    rng = random.Random(seed)
    parts, other, texts = word_parts(vocab)
    lengths = list(parts)
    part = lambda most=10: rng.choice(parts[rng.choice([k for k in lengths if k <= most])])
    space = lambda: " " if rng.random() < 0.5 else ""
    out = []
    for _ in range(-(-n // len(kinds))):
        # every kind draws each round, so a kind left out changes none of the others' strings
        words = [part() for _ in range(rng.randint(2, 3))]
        caps = [part(4).upper() for _ in range(rng.randint(1, 3))]
        # numbers in code are padded, masked and rounded ('0x00010000', '70000001', '999950'): runs of one
        # digit, each 1 long half the time and up to 8 long otherwise
        runs = [
            rng.choice("0123456789") * (1 if rng.random() < 0.5 else rng.randint(2, 8))
            for _ in range(rng.randint(2, 4))
        ]
        made = {
            "lower": space() + "".join(words),
            "suffixed": space() + words[0] + "".join(rng.sample(SUFFIXES, rng.randint(1, 2))),
            "camel": space() + words[0] + "".join(w.capitalize() for w in words[1:]),
            "capital": space() + "".join(w.capitalize() for w in words),
            "upper": space() + "".join(caps) + (part().capitalize() if rng.random() < 0.5 else ""),
            "upper_words": space() + "".join(w.upper() for w in words[: rng.randint(1, 3)]),
            "digits": space()
            + "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 12))),
            "digit_runs": space() + "".join(runs)[:16],
            "vocab_pair": rng.choice(texts) + rng.choice(texts),
            "script": space() + "".join(rng.choice(other) for _ in range(rng.randint(1, 3)))
            if other
            else "",
        }
        out.extend(made[k] for k in kinds)
    return out[:n]


def number_texts(max_len):
    """Every ASCII number of 1..max_len digits, bare and after a space: numbers in text are mostly short
    (years, sizes, ports), and no random draw covers the 22,220 of up to 4 digits.

        >>> number_texts(1)[:3], len(number_texts(2))
        (['0', ' 0', '1'], 220)
    """
    return [
        space + "".join(d)
        for n in range(1, max_len + 1)
        for d in itertools.product("0123456789", repeat=n)
        for space in ("", " ")
    ]


def generated_labels(texts, original):
    """(distinct byte-level pre-tokens of the generated texts, cut by GPT-2's pre-tokenizer, GPT-2's ids of each)."""
    gpt2_pt = pre_tokenizer_gpt2()
    words = sorted(
        {
            w
            for t in tqdm(texts, desc="generated examples", unit="text", mininterval=1, leave=False)
            for w, _ in gpt2_pt.pre_tokenize_str(t)
        }
    )
    ids = [tuple(e.ids) for e in bare(original).encode_batch(words)]
    return words, ids
