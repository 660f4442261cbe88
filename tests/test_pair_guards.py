"""lib/pair_guards.py: guard strings count what a change breaks beyond the examples."""

from distill_fixture import gpt2_tables

from lib.exact_repair import broken_by
from lib.gpt2_bpe import bare
from lib.greedy_repair import RepairState
from lib.pair_guards import PairGuards


def test_pair_guards_count_what_a_change_breaks_beyond_the_examples(gpt2_bpe):
    """Lowering 'Ġcm' far enough turns ' cmode' (BPE 'Ġcm' + 'ode') wrong: a string no example holds,
    made by pairing the token with a frequent partner; the loss counts it (times the weight), and a
    change that moves nothing breaks nothing."""
    bpe, vocab, merges, scores, token_strings = gpt2_tables(gpt2_bpe)
    partners = [vocab[s] for s in ("ode", "ake", "Ġthe")]
    guards = PairGuards(bpe, partners, None, {("Ġcmake", (vocab["Ġcm"], vocab["ake"]))}, 3)
    strings = {tuple(y) for _, y, _ in guards.strings(vocab["Ġcm"])}
    assert (vocab["Ġcm"], vocab["ode"]) in strings and (
        vocab["Ġcm"],
        vocab["ake"],
    ) not in strings  # an example already
    assert guards.loss([vocab["Ġcm"]], 0.0, scores) == 0
    assert guards.loss([vocab["Ġcm"]], -0.5 * scores[vocab["Ġcm"]], scores) >= 3
    assert guards.summary()["changes_tried"] == 2


def test_exact_repair_guards_the_strings_where_two_moved_tokens_meet(gpt2_bpe):
    """PairGuards.joined: '200' + '430' is the pre-token '200430' (BPE '2004' + '30'), a guard string when
    both move; '200' + 'Ġthe' is two pre-tokens and an example is no guard string. broken_by reports the
    joined string a change of both tokens turns wrong."""
    from lib.unigram import RepairIndex, lattice

    bpe, vocab, merges, scores, token_strings = gpt2_tables(gpt2_bpe)
    a, b, the = vocab["200"], vocab["430"], vocab["Ġthe"]
    example = ("430200", tuple(bare(gpt2_bpe).encode("430200").ids))
    guards = PairGuards(bpe, [], None, {example}, 1)
    joined = {p: y for _, y, p in guards.joined([a, b, the])}
    assert joined == {
        "200200": tuple(bare(gpt2_bpe).encode("200200").ids),
        "200430": (vocab["2004"], vocab["30"]),
        "430430": tuple(bare(gpt2_bpe).encode("430430").ids),
    }
    index = RepairIndex(
        [lattice("Ġthe", vocab, 64)], [(the,)], [1], [4], [len(s) for s in token_strings]
    )
    index.refresh_all(scores)
    up = 2.0 * (scores[vocab["2004"]] + scores[vocab["30"]])
    state = RepairState([("Ġthe", (the,), 1)], index, scores, guards, {})
    beaten = broken_by(state, {a: up, b: up}, [], set())
    assert "200430" in {name for (name, _, _), _, new in beaten if new}
    assert scores == gpt2_tables(gpt2_bpe)[3]  # restored
