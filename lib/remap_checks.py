"""06's checks of the remapped tokenizer: seeded fuzz texts, the round trip decode(encode(x)) == x,
text without any new string encoded exactly as before, and which new tokens the held-out split never
emits (and why).

    >>> fuzz = fuzz_texts(3000, seed=0, rules=rules, sample=held.sample)
    >>> check_round_trip(held, fuzz, remapped, distilled)      # dies, naming the text, on a failure
"""

import random
from collections import Counter

from tqdm import tqdm

from lib.ivr import contained, count_pretokens, piece_text, pre_tokens
from lib.log import die, log
from lib.phases import phase
from lib.tokenizer import EOT


def fuzz_texts(n, seed, rules, sample):
    """Seeded fuzz: random unicode, raw bytes, whitespace runs, old and new strings in context, slices of the
    held-out sample."""
    rng = random.Random(seed)
    planes = [
        (0x20, 0x7E),
        (0xA0, 0x24F),
        (0x370, 0x3FF),
        (0x400, 0x4FF),
        (0x590, 0x6FF),
        (0x900, 0x97F),
        (0x300, 0x36F),
        (0x2000, 0x206F),
        (0x3040, 0x30FF),
        (0x4E00, 0x9FFF),
        (0xAC00, 0xD7A3),
        (0xE000, 0xF8FF),
        (0x1F300, 0x1FAFF),
        (0x10000, 0x1FFFF),
        (0xF0000, 0x10FFFF),
        (0x0, 0x1F),
    ]
    spaces = [" ", "\n", "\t", "\r", "\x0b", "\x0c", "\u00a0", "\u3000", "\u2028", "\r\n"]
    olds = [piece_text(r["old"]) for r in rules] or ["hello"]
    news = [r["text"] for r in rules] or ["  "]
    words = [
        "def",
        " return",
        "x",
        "self",
        "(",
        ")",
        ":",
        "'",
        '"',
        "#",
        "é",
        "日本",
        "🙂",
        "0",
        "__init__",
        "\\",
    ]
    out = [
        "",
        " ",
        "\n",
        EOT,
        f"a{EOT}b",
        "\n" + " " * 200 + "x",
        " " * 1000,
        "\t" * 50 + "\n" * 50,
    ]
    kinds = [
        "unicode",
        "bytes_latin1",
        "bytes_utf8_replace",
        "whitespace",
        "old",
        "new",
        "mixed",
        "slice",
    ]
    while len(out) < n:
        kind = kinds[len(out) % len(kinds)]
        if kind == "unicode":
            text = "".join(chr(rng.randint(*rng.choice(planes))) for _ in range(rng.randint(1, 60)))
            text = "".join(ch for ch in text if not 0xD800 <= ord(ch) <= 0xDFFF)
        elif kind == "bytes_latin1":
            text = bytes(rng.randrange(256) for _ in range(rng.randint(1, 60))).decode("latin-1")
        elif kind == "bytes_utf8_replace":
            text = bytes(rng.randrange(256) for _ in range(rng.randint(1, 60))).decode(
                "utf-8", errors="replace"
            )
        elif kind == "whitespace":
            text = "".join(
                rng.choice(spaces) * rng.randint(1, 40) + rng.choice(["", *words])
                for _ in range(rng.randint(1, 8))
            )
        elif kind == "old":
            text = "".join(
                rng.choice(["", " ", "\n", *words]) + rng.choice(olds)
                for _ in range(rng.randint(1, 4))
            )
        elif kind == "new":
            text = "".join(
                rng.choice(news) + rng.choice(["", " ", "x", "\n", *words])
                for _ in range(rng.randint(1, 6))
            )
        elif kind == "mixed":
            parts = [
                rng.choice(olds),
                rng.choice(news),
                rng.choice(words),
                rng.choice(spaces) * rng.randint(1, 30),
            ]
            rng.shuffle(parts)
            text = "".join(parts)
        else:
            doc = rng.choice(sample) if sample else "x"
            a = rng.randrange(max(len(doc), 1))
            text = doc[a : a + rng.randint(1, 400)]
        out.append(text)
    return out[: max(n, 0)]


def check_round_trip(held, fuzz, remapped, distilled):
    """decode(encode(x)) == x on every held-out document (counted in the stream) and on the fuzz texts."""
    phase("round trip of the fuzz texts")
    ids = [e.ids for e in remapped.encode_batch(fuzz, add_special_tokens=False)]
    failures = [
        t
        for t, back in zip(fuzz, remapped.decode_batch(ids, skip_special_tokens=False))
        if back != t
    ]
    n_fail = held.failures + len(failures)
    if n_fail:
        first = held.first_failure if held.first_failure is not None else failures[0]
        d_ok = (
            distilled.decode(
                distilled.encode(first, add_special_tokens=False).ids, skip_special_tokens=False
            )
            == first
        )
        die(
            f"decode(encode(x)) != x for {n_fail:,} of {held.docs + len(fuzz):,} texts, e.g. {first[:80]!r} "
            f"(the distilled tokenizer {'round-trips it' if d_ok else 'fails on it too'})"
        )
    log.info(
        f"round trip: decode(encode(x)) == x on all {held.docs + len(fuzz):,} texts ({held.docs:,} held-out, "
        f"{len(fuzz):,} fuzz)"
    )


def check_unchanged(distilled, remapped, rules, held, fuzz):
    """Every distinct pre-token (held-out and fuzz) without a new string and a given-away id encodes as before.

    Returns the counts for the report and {pre-token: the new strings inside it} for those that hold one.
    """
    phase("unchanged: pre-tokens without a new string")
    given = {r["id"] for r in rules}
    counts = Counter(held.pre_counts)
    count_pretokens(distilled, fuzz, counts)
    keys = list(counts)
    found = {p: f for p, f in zip(keys, contained(keys, {r["new"] for r in rules})) if f}
    unchanged = {
        "pre_token_occurrences": sum(counts.values()),
        "distinct": len(counts),
        "checked": 0,
        "with_new_string": 0,
        "needing_given_away_id": 0,
        "changed": 0,
    }
    for p in tqdm(keys, desc="unchanged", unit="pre-token"):
        f = counts[p]
        if p in found:
            unchanged["with_new_string"] += f
            continue
        before = [t.id for t in distilled.model.tokenize(p)]
        if given.intersection(before):
            unchanged["needing_given_away_id"] += f
            continue
        unchanged["checked"] += f
        after = [t.id for t in remapped.model.tokenize(p)]
        if after != before:
            die(
                f"pre-token {piece_text(p)!r} has no new string yet encodes as {after} instead of {before}"
            )
    whole = [t for t in fuzz if not any(p in found for p in pre_tokens(distilled, t))]
    for t in whole:
        before = distilled.encode(t, add_special_tokens=False).ids
        if (
            not given.intersection(before)
            and remapped.encode(t, add_special_tokens=False).ids != before
        ):
            die(
                f"text {t[:80]!r} has no new string yet encodes differently from the distilled tokenizer"
            )
    unchanged["whole_fuzz_texts_checked"] = len(whole)
    log.info(
        f"unchanged: {unchanged['checked']:,} pre-token occurrences without a new string encode exactly as "
        f"before ({unchanged['with_new_string']:,} contain one, {unchanged['needing_given_away_id']:,} needed "
        f"a given-away id); {len(whole):,} whole fuzz texts too"
    )
    return unchanged, found


def not_emitted(rules, held, found):
    """The new tokens never emitted on held-out, each with why (its string absent, or never where it wins)."""
    occ = Counter()
    for p, strings in found.items():
        f = held.pre_counts.get(p, 0)
        for s in strings:
            occ[s] += f * p.count(s)
    out = []
    for r in rules:
        if held.id_counts[r["id"]]:
            continue
        n = occ[r["new"]]
        why = (
            "its string does not occur in the held-out split"
            if n == 0
            else f"its string occurs {n:,} times, but never where it replaces its own old pieces "
            f"(inside an old token, across a better cut, or under a longer new piece)"
        )
        out.append({"id": r["id"], "text": r["text"], "why": why})
    for item in out[:20]:
        log.info(f"  not emitted on held-out: id {item['id']} {item['text']!r}: {item['why']}")
    return out
