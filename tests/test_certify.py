"""lib/certify.py and lib/certify_pieces.py: conflicts no Unigram scores can reproduce, checked exactly."""

import collections
import time

from distill_fixture import EXACT_CFG, exact_case


def test_certify_hand_made_conflicts():
    """A permutation pair ('#####': BPE '####,#', which loses the tie) is infeasible alone; 'abc' -> 'ab,c' with
    'abcab' -> 'a,bc,ab' asks ab + c > a + bc and a + bc >= ab + c: certified with multipliers 1, 1. A label
    set that scores can meet is reported consistent."""
    from lib.certify import certify
    from lib.unigram import lattice

    vocab = {"#": 0, "####": 1, "a": 2, "b": 3, "c": 4, "ab": 5, "bc": 6}
    token_len = {i: len(s) for s, i in vocab.items()}
    cases = [
        (w, lattice(w, vocab, 4), y)
        for w, y in (("#####", (1, 0)), ("abc", (5, 4)), ("abcab", (2, 6, 5)), ("ab", (5,)))
    ]
    result = certify(
        cases, token_len, start_paths=[(0, 1), (2, 6), (5, 4, 5), (2, 3)], time_limit=30
    )
    found = {tuple(c["cases"]): c for c in result["conflicts"]}
    assert set(found) == {("#####",), ("abc", "abcab")} and all(
        c["verified"] for c in found.values()
    )
    assert [r[4] for r in found[("abc", "abcab")]["rows"]] == ["1", "1"]
    assert [r[3] for r in found[("abc", "abcab")]["rows"]] == [
        1,
        0,
    ]  # 'a,bc' wins ties against 'ab,c'
    ok = certify([cases[1], cases[3]], token_len, time_limit=30)
    assert ok["status"] == "consistent" and not ok["conflicts"]
    # stopped at max_conflicts, the cases left are unchecked: never reported as free of conflicts
    first = certify(
        cases,
        token_len,
        start_paths=[(0, 1), (2, 6), (5, 4, 5), (2, 3)],
        time_limit=30,
        max_conflicts=1,
    )
    assert first["status"] == "conflict limit" and len(first["conflicts"]) == 1


def test_farkas_is_exact():
    from fractions import Fraction

    from lib.certify import farkas

    assert farkas([({1: 2, 2: -1}, 1), ({1: -1, 2: 1}, 0), ({1: -1}, 0)]) == [
        Fraction(1),
        Fraction(1),
        Fraction(1),
    ]
    assert farkas([({1: 1, 2: -1}, 0), ({1: -1, 2: 1}, 0)]) is None  # a tie both allow: no proof
    assert farkas([({1: 1}, 1)]) is None  # feasible


def test_prove_tells_a_conflict_from_a_forced_tie():
    """Rows no scores meet all strictly: a > b with b >= a is a conflict (no scores); a >= b with b >= a
    holds only at a == b (a forced tie); the multipliers add the rows up to 0 >= 1 and 0 >= 0. A third row
    outside the proof is left out; rows that can all hold strictly prove nothing."""
    from fractions import Fraction

    from lib.certify import prove

    deadline = time.monotonic() + 30
    extra = ({3: 1, 1: -1}, 1)
    assert prove([({1: 1, 2: -1}, 1), extra, ({1: -1, 2: 1}, 0)], deadline) == (
        "conflict",
        [0, 2],
        [Fraction(1), Fraction(1)],
    )
    assert prove([({1: 1, 2: -1}, 0), extra, ({1: -1, 2: 1}, 0)], deadline) == (
        "tie",
        [0, 2],
        [Fraction(1), Fraction(1)],
    )
    assert prove([({1: 1, 2: -1}, 0), extra], deadline) is None


def test_prove_gpt2_conflict_and_forced_tie_from_the_exact_repairs_dual_ray(gpt2_bpe):
    """The rows the exact repair's dual ray named for ' 69069' on the default corpus: ten number strings,
    each BPE's segmentation against the path that beat it. Their token counts cancel and four margins are 1:
    0 >= 4 for any scores. Dropping one row leaves nothing to prove. Three with every margin 0: a tie."""
    from lib.certify import prove, row

    vocab = gpt2_bpe.get_vocab()
    token_len = {i: len(s) for s, i in vocab.items()}
    cases = [
        ("Ġ69069", "Ġ69 06 9", "Ġ6 90 69"),
        ("Ġ69224510122", "Ġ6 92 24 51 01 22", "Ġ69 224 51 01 22"),
        ("6775500890", "67 75 500 8 90", "67 75 500 89 0"),
        ("Ġ1556866913", "Ġ155 68 669 13", "Ġ155 68 66 9 13"),
        ("Ġ128006212892", "Ġ12 800 62 12 89 2", "Ġ12 800 62 128 92"),
        ("Ġ166905224", "Ġ16 69 05 224", "Ġ16 69 052 24"),
        ("Ġ1245927112", "Ġ12 459 27 112", "Ġ12 459 27 1 12"),
        ("Ġ2479052", "Ġ24 79 052", "Ġ24 79 05 2"),
        ("1128", "1 128", "112 8"),
        ("06669", "0 66 69", "06 669"),
    ]
    ids = lambda pieces: [vocab[p] for p in pieces.split()]
    bare = gpt2_bpe.__class__.from_str(gpt2_bpe.to_str())
    bare.pre_tokenizer = None
    assert [bare.encode(w).ids for w, _, _ in cases] == [
        ids(y) for _, y, _ in cases
    ]  # BPE's own segmentations
    assert all("".join(y.split()) == w == "".join(p.split()) for w, y, p in cases)
    rows = [row(ids(y), ids(p), token_len) for _, y, p in cases]
    kind, keep, lam = prove(rows, time.monotonic() + 60)
    assert kind == "conflict" and keep == list(range(10)) and set(lam) == {1}
    assert sum(m for _, m in rows) == 4
    assert prove(rows[1:], time.monotonic() + 60) is None
    # and a forced tie it found in C headers: BPE's '70000001', '1000000' and '00100' hold together only
    # where 7+0000+001 and 7+000000+1 score exactly the same (every margin 0, the counts cancel)
    tie = [
        ("70000001", "7 0000 001", "7 000000 1"),
        ("1000000", "1 000000", "100 0000"),
        ("00100", "00 100", "001 00"),
    ]
    assert [bare.encode(w).ids for w, _, _ in tie] == [ids(y) for _, y, _ in tie]
    kind, keep, lam = prove(
        [row(ids(y), ids(p), token_len) for _, y, p in tie], time.monotonic() + 60
    )
    assert kind == "tie" and keep == [0, 1, 2] and set(lam) == {1}


def test_certify_real_gpt2_conflict(gpt2_bpe):
    """On GPT-2 itself: BPE cuts 'DLLLIBRARY' as D,LL,LIB,R,ARY and 'STDLIB' as ST,DL,IB, which ask
    D + LIB >= DL + IB and DL + IB > D + LIB: no scores give both."""
    from lib.certify import certify
    from lib.unigram import lattice, viterbi

    vocab = gpt2_bpe.get_vocab()
    max_len = max(map(len, vocab))
    token_len = {i: len(s) for s, i in vocab.items()}
    bare = gpt2_bpe.__class__.from_str(gpt2_bpe.to_str())
    bare.pre_tokenizer = None
    cases = [
        (w, lattice(w, vocab, max_len), tuple(bare.encode(w, add_special_tokens=False).ids))
        for w in ("DLLLIBRARY", "STDLIB")
    ]
    zero = collections.Counter()
    result = certify(
        cases, token_len, start_paths=[viterbi(c[1], zero) for c in cases], time_limit=60
    )
    assert [c["cases"] for c in result["conflicts"]] == [["DLLLIBRARY", "STDLIB"]] and result[
        "conflicts"
    ][0]["verified"]
    assert certify(cases[:1], token_len, time_limit=60)["status"] == "consistent"


def test_certify_time_limit_is_reported():
    from lib.certify import certify
    from lib.unigram import lattice

    vocab = {"a": 0, "b": 1, "ab": 2}
    result = certify(
        [("ab", lattice("ab", vocab, 2), (2,))],
        {0: 1, 1: 1, 2: 2},
        start_paths=[(0, 1)],
        time_limit=1e-9,
    )
    assert result["status"] == "time limit" and not result["conflicts"]


def test_the_exact_repairs_own_proof_stands_where_certify_finds_none():
    """lp_fixes hands on the strings and exact proof of a wrong piece's infeasible LP; with
    certify_time_limit 0, certify's own search checks nothing and that proof decides: 'zabc' is certified
    with the conflict's rows, and the same proof as a forced tie gives the class of its own."""
    from lib.certify_pieces import FORCED_TIE, certify_pieces, lp_fixes
    from lib.greedy_repair import RepairState

    strings = ["a", "b", "c", "z", "ab", "bc"]
    scores = [0.0, 0.0, 0.0, 0.0, 3.0, 2.0]
    _, index, ex = exact_case(strings, {"abc": ["ab", "c"], "zabc": ["z", "a", "bc"]}, scores)
    cfg = {
        **EXACT_CFG,
        "certify_max_pieces": 10,
        "certify_neighbours": 10,
        "certify_case_seconds": 10.0,
        "certify_time_limit": 60.0,
    }
    todo = [("zabc", index.lats[1], index.labels[1], index.paths[1], 1)]
    held, fixable = lp_fixes(RepairState(ex, index, scores, None, cfg), todo, "exact LP")
    assert set(held) == {"zabc"} and held["zabc"]["proof"]["kind"] == "conflict" and fixable == []
    state = RepairState(ex, index, scores, None, {**cfg, "certify_time_limit": 0.0})
    result = certify_pieces(state, todo, strings, held, "certify")
    assert result["pieces"] == {"zabc": "certified"} and result["ties"] == []
    assert sorted(r["piece"] for r in result["conflicts"][0]) == ["abc", "zabc"]
    tie = {"zabc": {**held["zabc"], "proof": {**held["zabc"]["proof"], "kind": "tie"}}}
    result = certify_pieces(state, todo, strings, tie, "certify")
    assert result["pieces"] == {"zabc": FORCED_TIE} and result["conflicts"] == []
    assert len(result["ties"]) == 1
