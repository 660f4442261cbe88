"""lib/pretokens.py: the deterministic sample of bpe_token_id_sequences.txt, and its bad lines."""

import pytest
from distill_fixture import id_bytes_of

from lib.pretokens import sample_documents, sample_lines


@pytest.mark.parametrize(
    "content, n_docs, expect",
    [
        ("", 1, ": 0 documents, the pre-token table counts 1"),
        ("1 2 3\n\n", 2, ":2: empty line"),
        ("1 2 3\n4 5", 2, ":2: last line has no newline"),
        ("1 2 x\n", 1, ":1: not a line of space-separated token ids"),
        ("1 2  3\n", 1, ":1: not a line of space-separated token ids"),
        ("99999\n", 1, ":1: id out of range"),
        ("31373 50256 227\n", 1, ":1: ids do not decode to UTF-8"),
        ("1 2 3\n4 5\n", 1, ": 2 documents, the pre-token table counts 1"),
    ],
)
def test_bad_sequences_are_refused(tmp_path, content, n_docs, expect, gpt2_bpe):
    path = tmp_path / "bpe_token_id_sequences.txt"
    path.write_text(content)
    with pytest.raises(SystemExit) as e:
        sample_documents(path, n_docs, 100, 10**6, id_bytes_of(gpt2_bpe))
    assert str(e.value).startswith("error: ") and expect in str(e.value)


def test_document_sample_is_deterministic_and_capped(tmp_path, gpt2_bpe):
    """Evenly spaced lines, the same on every call; a sampled line over the byte cap is left out and counted
    (a huge document costs one line read, never its ids as Python ints); texts are decoded from the ids."""
    assert sample_lines(10, 3) == [0, 3, 6] and sample_lines(4, 9) == [0, 1, 2, 3]
    assert sample_lines(1000, 7) == sample_lines(1000, 7) == [0, 142, 285, 428, 571, 714, 857]
    docs = [f"doc {k}: x = {k} * 2\n" for k in range(10)]
    lines = [" ".join(map(str, gpt2_bpe.encode(d).ids)) for d in docs]
    lines[6] = " ".join(["220"] * 5000)  # a long document among the sampled ones
    path = tmp_path / "seq.txt"
    path.write_text("\n".join(lines) + "\n")
    a = sample_documents(path, 10, 3, 1000, id_bytes_of(gpt2_bpe))
    b = sample_documents(path, 10, 3, 1000, id_bytes_of(gpt2_bpe))
    assert a[0] == b[0] == [docs[0], docs[3]]
    assert [x.tolist() for x in a[1]] == [
        gpt2_bpe.encode(docs[0]).ids,
        gpt2_bpe.encode(docs[3]).ids,
    ]
    assert a[2] == {"documents_in_split": 10, "sampled": 3, "left_out_too_long": 1}
