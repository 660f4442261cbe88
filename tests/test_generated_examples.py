"""lib/generated_examples.py: the generated strings are seeded, of each kind, and every short number."""

from lib.generated_examples import GENERATED_KINDS, generated_texts, number_texts


def test_generated_examples_deterministic():
    vocab = {
        s: i
        for i, s in enumerate(
            ["a", "b", "ab", "Ġ", "Ġab", "1", "2", "ĉ", "Ð°", "Ð±", "Ð°Ð±", "ba", "abc", "c"]
        )
    }
    one, again, other = (generated_texts(vocab, 70, seed) for seed in (0, 0, 1))
    assert one == again and one != other and len(one) == 70
    kind = dict(zip(GENERATED_KINDS, one))
    assert (
        kind["digits"].strip().isdigit()
        and "аб" in "".join(one)
        and kind["upper"].strip().isupper()
    )
    assert kind["capital"].strip()[:1].isupper() and kind["lower"].islower()
    assert kind["upper_words"].strip().isupper() and kind["digit_runs"].strip().isdigit()
    only = generated_texts(vocab, 10, 0, ["digits"])
    assert only[0] == kind["digits"] and all(
        t.strip().isdigit() for t in only
    )  # a kind's strings do not depend on the others


def test_number_examples_are_every_short_number():
    numbers = number_texts(3)
    assert len(numbers) == len(set(numbers)) == 2 * (10 + 100 + 1000)
    assert {"7", " 7", "042", " 999"} <= set(numbers) and all(
        n.strip().isdigit() and len(n.strip()) <= 3 for n in numbers
    )
    assert number_texts(0) == []
