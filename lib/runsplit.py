"""The run split: cut runs of one character inside a GPT-2 pre-token where BPE cuts them.

Unigram's Viterbi cannot reproduce some of BPE's segmentations, whatever the scores: on '#####' BPE
gives '####,#' and Viterbi, among equal sums, '#,####'. A run cut into BPE's own tokens leaves Viterbi
nothing to choose. The cut is sound only where no merge can cross the run's edges; bpe_trace proves
that per neighbour and run length (below).

The split is one `Split` stage after GPT-2's ByteLevel pre-tokenizer, so it sees one pre-token at a
time, exactly the pieces the learning sees. Its regex stays in the subset that Oniguruma (Rust
`tokenizers`) and JavaScript `u`-mode regexes (tokenizers.js, transformers.js) execute alike: fixed-
length lookbehinds, lookaheads, classes of literal characters, counted repeats, one backreference
inside a lookahead; no `\\G`, no backreference inside a lookbehind, no atomic groups or possessive
quantifiers, no `^`/`$`/`.`/`\\A`, no class intersection (tests/test_runsplit.py checks).

Without `\\G` ("where the last match ended") a regex cannot know, in the middle of a run, that the
run is being cut. So every match is a piece and the matches cover the whole pre-token: the next BPE
token of a run being cut, the pre-token's leading 'Ġ' + u*a, the first token of a run that may be cut,
a newline pair, or else the text up to the next run that may be cut. The engine then never starts a
match inside a run that it left whole.

Example (GPT-2's files):

    >>> split = build_run_split(bpe, vocab, merges, max_len=256)
    >>> split.pieces("x=====")  # one byte-level pre-token
    ['x', '====', '=']
"""

from __future__ import annotations

import collections
import functools
import heapq
from dataclasses import dataclass, field

from tqdm import tqdm

from lib.log import die
from lib.tokenizer import piece_bytes

ANY = "[\\s\\S]"  # '.' is not portable: Oniguruma's excludes only '\n' by option, tokenizers.js rewrites it
AT_START = "(?<!" + ANY + ")"
AT_END = "(?!" + ANY + ")"


def bpe_trace(word: str, ranks: dict) -> tuple[list, list, list]:
    """HF BPE on one word: (tokens, left symbols, right symbols); each symbol is (string, highest rank
    popped while it is the left / right symbol; inf if it survives). Same order as tokenizers' BPE:
    the lowest-rank pair first, the leftmost of equal ranks.

    >>> bpe_trace("==", {("=", "="): 0})[0]
    ['==']
    """
    n = len(word)
    sym = list(word)
    nxt, prv = list(range(1, n)) + [-1], list(range(-1, n - 1))
    heap = [
        (ranks[(sym[i], sym[i + 1])], i, sym[i], sym[i + 1])
        for i in range(n - 1)
        if (sym[i], sym[i + 1]) in ranks
    ]
    heapq.heapify(heap)
    alive = [True] * n
    left, right = [[sym[0], -1]], [[sym[-1], -1]]
    last = n - 1
    while heap:
        r, i, a, b = heapq.heappop(heap)
        k = nxt[i]
        if not alive[i] or k == -1 or sym[i] != a or sym[k] != b:
            continue
        left[-1][1] = max(left[-1][1], r)
        right[-1][1] = max(right[-1][1], r)
        sym[i], alive[k], nxt[i] = a + b, False, nxt[k]
        if nxt[k] != -1:
            prv[nxt[k]] = i
        if i == 0:
            left.append([sym[i], -1])
        if k == last:
            last = i
            right.append([sym[i], -1])
        for x, y in ((prv[i], i), (i, nxt[i])):
            if x != -1 and y != -1 and (sym[x], sym[y]) in ranks:
                heapq.heappush(heap, (ranks[(sym[x], sym[y])], x, sym[x], sym[y]))
    left[-1][1] = right[-1][1] = float("inf")
    tokens, i = [], 0
    while i != -1:
        tokens.append(sym[i])
        i = nxt[i]
    return tokens, [tuple(x) for x in left], [tuple(x) for x in right]


def run_units(vocab: dict) -> list[str]:
    """Characters whose runs BPE merges: byte-level chars with a vocab token of 2+ of them (not Ġ, Ċ:
    spaces and newlines have their own rule), and multi-byte characters (2-4 byte-level chars) likewise."""
    repeated = {t[0] for t in vocab if len(t) >= 2 and t == t[0] * len(t)}
    single = sorted(s for s in vocab if len(s) == 1 and s not in "ĠĊ" and s in repeated)
    multi = set()
    for s in vocab:
        for k in (2, 3, 4):
            u = s[:k]
            if len(s) >= 2 * k and len(s) % k == 0 and s == u * (len(s) // k):
                try:
                    if len(piece_bytes(u).decode("utf-8")) == 1:
                        multi.add(u)
                except (KeyError, UnicodeDecodeError):
                    pass
    return single + sorted(multi)


def esc(s: str) -> str:
    """A literal for both engines: ASCII punctuation as \\xNN (never a metacharacter), the rest as is."""
    return "".join(f"\\x{ord(ch):02X}" if ch.isascii() and not ch.isalnum() else ch for ch in s)


def quant(lo: int, hi: int | None) -> str:
    return f"{{{lo},}}" if hi is None else f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"


def char_class(chars) -> str:
    return "[" + "".join(esc(c) for c in sorted(chars)) + "]"


def spans(ns: list[int]) -> list[list[int]]:
    """Consecutive integers as [lo, hi] spans: spans([1, 2, 3, 7]) == [[1, 3], [7, 7]]."""
    out = []
    for n in ns:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


def only_within(group, lo, hi):
    """A length group (lengths below n0, period p, residues) cut to the lengths lo..hi (hi None: no top):
    only_within(([2, 3, 4], 4, [5, 6, 7, 8]), 3, 6) == ([3, 4], 4, [5, 6])."""
    fin, p, res = group
    fin = [n for n in fin if n >= lo and (hi is None or n <= hi)]
    first = lambda r: (
        r if r >= lo else r + p * -(-(lo - r) // p)
    )  # the least length >= lo of residue r
    return fin, p, [r for r in res if hi is None or first(r) <= hi]


def alternation(parts) -> str:
    return "(?:" + "|".join(parts) + ")"


class RunRegex:
    """The regex parts for the runs of one unit u (a byte-level string of one character), from BPE traces
    of u*n and 'Ġ'+u*n, n = 1..max_len. A symbol alive at a run's edge with a lower rank than the run's
    own merges that retire it can merge with a neighbour; the neighbours that can cross are then known
    exactly for each n, with no assumption on the text around (periodic in n beyond a point)."""

    def __init__(self, u, by_left, by_right, ranks, max_len):
        self.u, self.max_len = u, max_len
        self.E = esc(u)
        self.G = self.E if len(u) == 1 else "(?:" + self.E + ")"
        self.trace = {
            p: {n: bpe_trace(p + u * n, ranks) for n in range(1, max_len + 1)} for p in ("", "Ġ")
        }
        lengths = range(1, max_len + 1)
        self.unsafe_left = {n: self.crossing(self.trace[""][n][1], by_right, -1) for n in lengths}
        self.unsafe_right = {n: self.crossing(self.trace[""][n][2], by_left, 0) for n in lengths}
        self.unsafe_right_g = {n: self.crossing(self.trace["Ġ"][n][2], by_left, 0) for n in lengths}

    def crossing(self, syms, index, end):
        """The neighbour characters that some edge symbol merges with before the run retires it."""
        found = {o[end] for s, top in syms for r, o in index.get(s, ()) if r < top}
        return frozenset(found) - {self.u[end]}

    def rows(self, prefix):
        """[(a, lo, hi)]: on prefix + u*n with lo <= n - a <= hi, BPE's first token is prefix + u*a and the
        rest is BPE(u*(n - a)); hi None: the same up to max_len, taken to hold beyond."""
        u, t, out = self.u, self.trace, []
        for n in range(1, self.max_len + 1):
            toks = t[prefix][n][0]
            a, r = divmod(len(toks[0]) - len(prefix), len(u))
            if (
                len(toks) < 2
                or r
                or toks[0] != prefix + u * a
                or n - a < 1
                or t[""][n - a][0] != toks[1:]
            ):
                continue
            if out and out[-1][0] == a and out[-1][2] == n - a - 1:
                out[-1][2] = n - a
            else:
                out.append([a, n - a, n - a])
        for row in out:
            if row[2] == self.max_len - row[0] and row[1] < row[2]:
                row[2] = None
        return [tuple(r) for r in out]

    def lengths(self, f, lo):
        """Group run lengths n >= lo by f(n): {set: (lengths below n0, period p, residues n0..n0+p-1)}."""
        m = self.max_len
        for p in (1, 2, 4, 8, 16, 32, 64):
            n0 = m - p
            while n0 > lo and f[n0 - 1] == f[n0 - 1 + p]:
                n0 -= 1
            if (
                n0 <= m // 2 and n0 + 2 * p <= m
            ):  # repeating over half the lengths traced, 2+ periods
                break
        else:
            die(
                f"runs of {self.u!r}: the cut rule shows no period up to length {m}; raise run_split_max_len"
            )
        groups = collections.defaultdict(lambda: ([], []))
        for n in range(lo, n0):
            groups[f[n]][0].append(n)
        for n in range(n0, n0 + p):
            groups[f[n]][1].append(n)
        return {s: (fin, p, res) for s, (fin, res) in groups.items()}

    def length_is(self, fin, p, res, off):
        """Regex (a lookahead body) true when the run from here holds n - off more units, n in the group."""
        G = self.G
        alts = [G + quant(a - off, b - off) for a, b in spans([n for n in fin if n >= off])]
        for r in res:
            r -= off
            r += p * max(0, -(r // p))
            alts.append(
                G + quant(r, None) if p == 1 else G + quant(r, r) + "(?:" + G + quant(p, p) + ")*"
            )
        return "(?:" + "|".join(alts) + ")(?!" + self.E + ")" if alts else "(?!)"

    def gate(self, f, lo, side, off, within=None):
        """Regex: the neighbour on `side` cannot cross the run's edge, for this run's length (off units of
        the run are behind the current position). Lookbehinds are of fixed length. within: (lo, hi or
        None), the run lengths the caller already requires: groups of other lengths are left out."""
        G, E = self.G, self.E
        groups = self.lengths(f, lo)
        if within:
            groups = {
                s: g
                for s, g in ((s, only_within(g, *within)) for s, g in groups.items())
                if g[0] or g[2]
            }
        if len(groups) == 1:
            chars = next(iter(groups))
            if not chars:
                return ""
            c = char_class(chars)
            return (
                "(?<!" + c + G * off + ")"
                if side == "L"
                else "(?=" + G + "*(?!" + E + ")(?!" + c + "))"
            )
        alts = []
        for chars, (fin, p, res) in sorted(groups.items(), key=lambda kv: sorted(kv[0])):
            n = self.length_is(fin, p, res, off)
            c = char_class(chars) if chars else ""
            if side == "L":
                alts.append("(?=" + n + ")" + ("(?<!" + c + G * off + ")" if c else ""))
            else:
                alts.append("(?=" + n + ("(?!" + c + ")" if c else "") + ")")
        return "(?:" + "|".join(alts) + ")"

    def start_cond(self):
        """After one unit is consumed: it starts a run (of 2+) whose neighbours cannot cross its edges; a
        piece's start and end count as safe neighbours."""
        E, m = self.E, self.max_len
        always = frozenset.intersection(*[self.unsafe_left[n] for n in range(2, m + 1)])
        return (
            "(?<!"
            + E
            + E
            + ")(?="
            + E
            + ")"
            + ("(?<!" + char_class(always) + E + ")" if always else "")
            + self.gate(self.unsafe_left, 2, "L", 1)
            + self.gate(self.unsafe_right, 2, "R", 1)
        )

    def after_space(self):
        """After a piece's leading 'Ġ' is consumed: BPE's first token 'Ġ' + u*a, when the run that follows
        is cut as BPE(u*(n - a)) and its right neighbour cannot cross ("" if no such row)."""
        G, E = self.G, self.E
        alts = [
            G * a
            + "(?="
            + G
            + quant(lo, hi)
            + "(?!"
            + E
            + "))"
            + self.gate(
                self.unsafe_right_g, 1, "R", a, within=(a + lo, None if hi is None else a + hi)
            )
            for a, lo, hi in self.rows("Ġ")
        ]
        return "(?=" + E + ")" + alternation(alts) if alts else ""

    def chunk(self):
        """After one unit of the run is consumed: the rest of BPE's next token of the run, by the units
        left (the run's right neighbour was checked where the run started)."""
        G, E, m = self.G, self.E, self.max_len
        alts = [
            G + quant(a - 1, a - 1) + "(?=" + G + quant(lo, hi) + "(?!" + E + "))"
            for a, lo, hi in self.rows("")
        ]
        whole = [n for n in range(1, m + 1) if len(self.trace[""][n][0]) == 1]
        alts += [G + quant(a - 1, b - 1) + "(?!" + E + ")" for a, b in spans(whole)]
        return alternation(alts) if alts else "(?!)"

    def continues(self):
        """After one unit is consumed: the previous match was a token of this run (the unit before is
        the same, or is the piece's leading 'Ġ' that the previous match took alone)."""
        E = self.E
        return "(?:(?<=" + E + E + ")|(?<=Ġ" + E + ")(?<!" + ANY + "Ġ" + E + "))"


@dataclass(frozen=True)
class RunSplit:
    """The run split's regex (one Split stage after ByteLevel) and the run characters it serves."""

    pattern: str
    units: list[str] = field(default_factory=list)

    def stage(self):
        """The Split pre-tokenizer; it follows ByteLevel in the tokenizer."""
        return split_stage(self.pattern)

    def pieces(self, pretoken: str) -> list[str]:
        """One byte-level pre-token cut by the split: pieces("x=====") == ['x', '====', '=']."""
        return [p for p, _ in self.stage().pre_tokenize_str(pretoken)]


@functools.lru_cache(maxsize=4)
def split_stage(pattern: str):
    """A Split pre-tokenizer of a regex (compiled once: the run split's regex is large)."""
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)


def grouped(parts: dict, units: list[str], group: int) -> str:
    """Units' branches behind a class of their first characters, `group` units a class: the engine
    passes over other text on one class test. Units without a branch ("" ) are left out."""
    units = [u for u in units if parts.get(u)]
    single = [u for u in units if len(u) == 1]
    multi = [u for u in units if len(u) > 1]
    out = [
        "(?=" + char_class(g) + ")" + alternation(parts[u] for u in g)
        for g in (single[i : i + group] for i in range(0, len(single), group))
    ]
    if multi:
        out.append(
            "(?=" + char_class({u[0] for u in multi}) + ")" + alternation(parts[u] for u in multi)
        )
    return alternation(out) if out else "(?!)"


def build_run_split(bpe_bare, vocab: dict, merges: list, max_len: int, group: int = 12) -> RunSplit:
    """The run split of a byte-level BPE (vocab, merges), checked against bpe_bare (its model alone, no
    pre-tokenizer) on every run traced: a cut inside one of BPE's tokens, or a run chunked otherwise
    than BPE does, stops with a one-line error."""
    ranks = {m: r for r, m in enumerate(merges)}
    by_left, by_right = collections.defaultdict(list), collections.defaultdict(list)
    for r, (a, b) in enumerate(merges):
        by_right[b].append((r, a))
        by_left[a].append((r, b))
    units = run_units(vocab)
    runs = [
        RunRegex(u, by_left, by_right, ranks, max_len)
        for u in tqdm(units, desc="run split", unit="char", leave=False)
    ]
    words = [(p + r.u * n, t[0]) for r in runs for p in ("", "Ġ") for n, t in r.trace[p].items()]
    for (w, mine), e in zip(words, bpe_bare.encode_batch([w for w, _ in words])):
        if e.tokens != mine:
            die(
                f"run split: BPE segments {w!r} as {e.tokens}, the trace as {mine}; this tokenizers "
                "version merges differently, so the run split would be unsound: set run_split: false"
            )
    # Each match is a piece. The regex covers the whole pre-token, so that the engine never starts a
    # match inside a run that it did not cut (the job `\\G` did): at each position it takes, in order,
    # the next BPE token of a run being cut, the piece's leading 'Ġ' + u*a, the text up to the next
    # position where a run may be cut, or (there) the run's first token; newline runs give their pairs
    # ('ĊĊ' is the only merge among whitespace, paired from the left). The test of a cuttable run start
    # stands once in the regex: tokenizers.js compiles the regex again for every pre-token, so its
    # length is its cost there.
    single = [u for u in units if len(u) == 1]
    multi = [u for u in units if len(u) > 1]
    # A run of single-char units starts where the next character is the same: a backreference inside a
    # lookahead (both engines read it forwards; never one inside a lookbehind) is a cheap first test.
    start = {r.u: r.E + r.start_cond() for r in runs}
    may_start = alternation(
        [
            "(?=(" + char_class(single) + ")\\1)" + grouped(start, single, group),
            grouped(start, multi, group),
            "(?<!Ċ)ĊĊ",
        ]
    )
    pattern = "|".join(
        [
            grouped({r.u: r.E + r.continues() + r.chunk() for r in runs}, units, group),
            "(?<=Ċ)ĊĊ",
            AT_START + "Ġ" + grouped({r.u: r.after_space() for r in runs}, units, group),
            "(?:(?!" + may_start + ")" + ANY + ")+",
            grouped({r.u: r.E + r.chunk() for r in runs}, units, group),  # where a run may start
            "ĊĊ",
        ]
    )
    split = RunSplit(pattern, units)
    check_on_runs(split, words)
    return split


def check_on_runs(split: RunSplit, words: list[tuple[str, list[str]]]) -> None:
    """Every traced run (u*n and 'Ġ'+u*n, with BPE's tokens): the split cuts only between BPE's tokens,
    and a piece that is one run is exactly one of them."""
    pre = split.stage()
    for w, tokens in words:
        pieces = [p for p, _ in pre.pre_tokenize_str(w)]
        bounds = {0}
        for t in tokens:
            bounds.add(max(bounds) + len(t))
        at, cuts = 0, set()
        for p in pieces:
            at += len(p)
            cuts.add(at)
        if not cuts <= bounds or "".join(pieces) != w:
            die(
                f"run split: cuts {w!r} into {pieces}, inside BPE's tokens {tokens}; set run_split: false"
            )
        if not w.startswith("Ġ") and pieces != tokens:
            die(f"run split: chunks {w!r} into {pieces}, BPE into {tokens}; set run_split: false")
