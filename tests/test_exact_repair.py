"""lib/exact_repair.py: several tokens moved at once, a conflict handed on, the time limit."""

import time

from distill_fixture import EXACT_CFG, exact_case, example, group_case

from lib.exact_repair import exact_repair, least_fix
from lib.greedy_repair import Moves, RepairState, merged_from, repair_example


def test_exact_repair_moves_several_tokens_where_every_single_move_breaks_an_example():
    """The case of the group-lowering test above, with single moves only: the greedy gives up on 'abc', and
    the exact repair's LP moves several tokens at once, keeping every example right. Capped at one token
    (exact_repair_max_tokens), it gives up and leaves the scores as they were."""
    from lib.unigram import viterbi

    strings, merges, scores, examples = group_case()
    vocab, index, ex = exact_case(strings, examples, scores)
    before = list(scores)
    assert not repair_example(0, index, scores, Moves(merged_from(vocab, merges), 1e-12, 1))
    deadline = time.monotonic() + 60
    one_token = RepairState(ex, index, scores, None, {**EXACT_CFG, "exact_repair_max_tokens": 1})
    assert least_fix(one_token, example(0, ex, index), ("example", 0), deadline) == (
        "too wide",
        None,
    )
    assert scores == before
    # as for an unseen piece (11 certify): found, not applied
    state = RepairState(ex, index, scores, None, EXACT_CFG)
    got = least_fix(state, example(0, ex, index), None, deadline, apply=False)
    assert got == ("fixable", None) and scores == before and index.right[0] is False
    assert least_fix(state, example(0, ex, index), ("example", 0), deadline) == ("fixed", None)
    assert all(tuple(viterbi(lat, scores)) == y for lat, (_, y, _) in zip(index.lats, ex))
    assert index.right == [True] * 5
    assert sum(a != b for a, b in zip(scores, before)) >= 2


def test_exact_repair_hands_a_conflict_to_certify():
    """'abc' = ab+c asks ab + c > a + bc (a+bc wins a tie), 'zabc' = z+a+bc asks a + bc >= ab + c. Fixing
    'zabc' breaks 'abc', which joins the LP: infeasible, scores unchanged, and certify proves the pair."""
    from lib.certify import certify

    strings = ["a", "b", "c", "z", "ab", "bc"]
    scores = [0.0, 0.0, 0.0, 0.0, 3.0, 2.0]
    vocab, index, ex = exact_case(strings, {"abc": ["ab", "c"], "zabc": ["z", "a", "bc"]}, scores)
    assert index.right == [True, False]
    before = list(scores)
    state = RepairState(ex, index, scores, None, EXACT_CFG)
    verdict, held = least_fix(state, example(1, ex, index), ("example", 1), time.monotonic() + 60)
    assert (
        verdict == "infeasible"
        and [name for name, _, _ in held["strings"]] == ["zabc", "abc"]
        and scores == before
    )
    # the LP's own dual ray, checked exactly, is the conflict: (ab+c) - (a+bc) >= 1 and (a+bc) - (ab+c) >= 0
    proof = held["proof"]
    assert (
        proof["kind"] == "conflict"
        and proof["cases"] == ["abc", "zabc"]
        and sorted(r[3] for r in proof["rows"]) == [0, 1]
    )
    result = certify(held["strings"], [len(s) for s in strings], time_limit=30)
    assert [c["cases"] for c in result["conflicts"]] == [["abc", "zabc"]] and result["conflicts"][
        0
    ]["verified"]


def test_exact_repair_past_its_time_limit_keeps_the_scores_and_says_so(caplog):
    """exact_repair_time_limit 0: no piece is tried, the scores stay as they were, and one warning line names
    the key to raise."""
    strings = ["a", "b", "c", "z", "ab", "bc"]
    scores = [0.0, 0.0, 0.0, 0.0, 3.0, 2.0]
    _, index, ex = exact_case(strings, {"abc": ["ab", "c"], "zabc": ["z", "a", "bc"]}, scores)
    before = list(scores)
    cfg = {**EXACT_CFG, "exact_repair_max_pieces": 10, "exact_repair_time_limit": 0.0}
    with caplog.at_level("WARNING"):
        result = exact_repair(RepairState(ex, index, scores, None, cfg), [True, True])
    assert result["pieces"] == {"zabc": "time limit"} and scores == before
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "exact_repair_time_limit" in warned[0] and "\n" not in warned[0]
