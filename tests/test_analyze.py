"""03 analyze: the id sequences are GPT-2's, the frequency table is complete, bad inputs fail cleanly."""

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_script
from lib.encoder import Encoder, id_lines
from lib.tokenizer import VOCAB_SIZE


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory, tiny_gpt2_dir):
    from conftest import write_raw_corpus

    art = tmp_path_factory.mktemp("art")
    raw = write_raw_corpus(art / "raw")
    run_script("01_init.py", "--artifacts", art, "--model-name", tiny_gpt2_dir)
    run_script("02_corpus.py", "--artifacts", art, "--raw-dir", raw, "--heldout-ratio", 0.3)
    run_script("03_analyze.py", "--artifacts", art, "--batch-docs", 3)
    return art


def test_sequences_are_gpt2_ids_one_line_per_train_doc(analyzed, gpt2_bpe):
    docs = [
        json.loads(line)["text"]
        for line in (analyzed / "corpora" / "cleaned" / "train.jsonl").read_text().splitlines()
    ]
    lines = (
        (analyzed / "analysis" / "reports" / "bpe_token_id_sequences.txt").read_text().split("\n")
    )
    assert lines[-1] == "" and len(lines) - 1 == len(docs)
    for doc, line in zip(docs, lines):
        assert [int(t) for t in line.split()] == gpt2_bpe.encode(doc).ids


def test_frequency_table_counts_every_id(analyzed, gpt2_bpe):
    table = pd.read_parquet(analyzed / "analysis" / "reports" / "token_frequency.parquet")
    assert list(table.columns) == ["token_id", "token", "count", "doc_count", "frequency"]
    assert len(table) == VOCAB_SIZE and list(table.token_id) == list(range(VOCAB_SIZE))
    docs = [
        json.loads(line)["text"]
        for line in (analyzed / "corpora" / "cleaned" / "train.jsonl").read_text().splitlines()
    ]
    ids = [i for d in docs for i in gpt2_bpe.encode(d).ids]
    space = 220
    assert table["count"].sum() == len(ids) and table["count"][space] == ids.count(space)
    assert table["doc_count"][space] == sum(space in gpt2_bpe.encode(d).ids for d in docs)
    assert table["frequency"].sum() == pytest.approx(1.0)
    assert table.token[space] == "Ġ" and table.token[50256] == "<|endoftext|>"
    summary = json.loads((analyzed / "analysis" / "reports" / "analyze_summary.json").read_text())
    assert summary["tokens"] == len(ids) and summary["documents"] == len(docs)


def test_not_gpt2_tokenizer_is_refused(analyzed, tmp_path):
    from tokenizers import Tokenizer, models

    art = tmp_path / "art"
    (art / "tokenizers" / "original").mkdir(parents=True)
    (art / "corpora").mkdir()
    os.symlink(analyzed / "corpora" / "cleaned", art / "corpora" / "cleaned")
    Tokenizer(models.BPE({"a": 0, "b": 1}, [])).save(
        str(art / "tokenizers" / "original" / "tokenizer.json")
    )
    proc = run_script("03_analyze.py", "--artifacts", art, check=False)
    assert (
        proc.returncode != 0
        and "vocab size 2 is not GPT-2's 50,257" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    (art / "tokenizers" / "original" / "tokenizer.json").write_text("{broken")
    proc = run_script("03_analyze.py", "--artifacts", art, check=False)
    assert proc.returncode != 0 and "not a readable tokenizers file" in proc.stderr


def test_missing_upstream_names_the_fix(tmp_path):
    proc = run_script("03_analyze.py", "--artifacts", tmp_path, check=False)
    assert proc.returncode != 0 and "train.jsonl is missing: run `make corpus` first" in proc.stderr


def test_kill_9_leaves_nothing_finished_and_rerun_is_correct(analyzed, tmp_path):
    """SIGKILL mid-write: no target file appears (only a .partial); the re-run gives the same output."""
    import shutil

    art = tmp_path / "art"
    shutil.copytree(analyzed / "tokenizers", art / "tokenizers")
    cleaned = art / "corpora" / "cleaned"
    cleaned.mkdir(parents=True)
    docs = [f"def f{i}(x):\n    return x + {i}\n" * 50 for i in range(1500)]
    with open(cleaned / "train.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")
    reports = art / "analysis" / "reports"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "03_analyze.py"),
            "--artifacts",
            str(art),
            "--batch-docs",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial = reports / "bpe_token_id_sequences.txt.partial"
    deadline = time.time() + 60
    while not (partial.exists() and partial.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.05)
    workers = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
    assert workers, "the worker processes should be running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert partial.exists(), "the step ended before it could be killed"
    deadline = time.time() + 10  # its worker processes die with it
    while any(os.path.exists(f"/proc/{w}") for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{w}") for w in workers)
    assert not (reports / "bpe_token_id_sequences.txt").exists()
    assert not (reports / "token_frequency.parquet").exists()
    assert not (reports / "pretoken_table.parquet").exists()
    run_script("03_analyze.py", "--artifacts", art)
    assert not partial.exists()
    lines = (reports / "bpe_token_id_sequences.txt").read_text().splitlines()
    assert len(lines) == len(docs)


TRICKY = [
    "def f(x):\n\tif x:\n        return x  # ====\n\n\n   \n",
    "it's they're we'll I'd 'S 'll",
    "a<|endoftext|>b <|endoftext|>\n<|endoftext|>",
    "<|endoftext|>",
    "",
    " ",
    "\r\n\r\n  x  ",
    "   trailing   ",
    "안녕하세요 세계! 你好，世界。 😀🎉👩‍👩‍👧 ㅋㅋㅋㅋ ————",
    "12345 1,000,000 3.14159 x²",
    "\u2028 \u00a0 \x00\x01 \ufeff",
    "x\x1c\x1fy \x85z\u3000 \u3000w\u200b v\t \n",
    "end with spaces  \n\n  ",
    "\n\n\nx",
    "nul\x00 as text \x00\x00 x\x00\n \x00",
    "a \x00's \x00 \n\n\x00 é\x00中",
]  # NUL: the fast path's separator


def hf_pretokens(gpt2_bpe, text):
    """GPT-2's pre-tokens of a text as tokenizers makes them (the special token split off first)."""
    return [
        w
        for part in text.split("<|endoftext|>")
        for w, _ in gpt2_bpe.pre_tokenizer.pre_tokenize_str(part)
    ]


@pytest.mark.parametrize("name", ["gigatoken", "tokenizers"])
def test_encoder_is_gpt2_bpe_on_tricky_text(name, gpt2_bpe, tmp_path):
    """Both encoders give tokenizers' ids and GPT-2's pre-tokens: the special token inside text, whitespace runs,
    U+2028, NUL, CJK, emoji, contractions, random ASCII."""
    from lib.tokenizer import piece_bytes

    gpt2_bpe.save(str(tmp_path / "tokenizer.json"))
    encoder = Encoder(name, tmp_path / "tokenizer.json", gpt2_bpe)
    rng = random.Random(0)
    ascii_text = [
        "".join(rng.choice("".join(map(chr, range(128)))) for _ in range(200)) for _ in range(50)
    ]
    texts = TRICKY + [t * 3 for t in TRICKY] + ["".join(TRICKY)] + ascii_text
    flat, lengths = encoder.encode(texts)
    assert lengths.tolist() == [len(gpt2_bpe.encode(t).ids) for t in texts]
    assert flat.tolist() == [i for t in texts for i in gpt2_bpe.encode(t).ids]
    for text in texts:
        for part in text.split("<|endoftext|>"):
            want = collections.Counter(
                piece_bytes(w) for w, _ in gpt2_bpe.pre_tokenizer.pre_tokenize_str(part)
            )
            assert dict(encoder.pretokens(part)) == dict(want), part


def test_id_lines_match_the_plain_join():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=40)
    flat = rng.integers(0, VOCAB_SIZE, size=int(lengths.sum()))
    starts = np.concatenate([[0], np.cumsum(lengths)])
    want = "".join(
        " ".join(map(str, flat[a:b])) + "\n" for a, b in zip(starts[:-1], starts[1:])
    ).encode()
    assert id_lines(flat, lengths) == want
    assert id_lines(np.array([5, 50256]), np.array([0, 2, 0])) == b"\n5 50256\n\n"


def test_pretoken_table_counts_every_pretoken(analyzed, gpt2_bpe):
    """Every distinct GPT-2 pre-token of the train split, with its count, document count and BPE ids."""
    from lib.pretokens import read_pretoken_table

    docs = [
        json.loads(line)["text"]
        for line in (analyzed / "corpora" / "cleaned" / "train.jsonl").read_text().splitlines()
    ]
    table = read_pretoken_table(
        analyzed / "analysis" / "reports" / "pretoken_table.parquet",
        tokenizer_json=analyzed / "tokenizers" / "original" / "tokenizer.json",
    )
    counts = collections.Counter(w for d in docs for w in hf_pretokens(gpt2_bpe, d))
    doc_counts = collections.Counter(w for d in docs for w in set(hf_pretokens(gpt2_bpe, d)))
    got = {
        w: (int(n), int(d), table.ids(k))
        for k, (w, n, d) in enumerate(zip(table.pretokens, table.counts, table.doc_counts))
    }
    assert got == {
        w: (n, doc_counts[w], tuple(t.id for t in gpt2_bpe.model.tokenize(w)))
        for w, n in counts.items()
    }
    order = [(-n, w) for w, (n, _, _) in got.items()]
    assert [(-int(n), w) for w, n in zip(table.pretokens, table.counts)] == sorted(order)
    assert table.meta["documents"] == len(docs) and table.meta["occurrences"] == sum(
        counts.values()
    )


def test_truncated_or_foreign_table_is_a_one_line_error(analyzed, tmp_path):
    path = analyzed / "analysis" / "reports" / "pretoken_table.parquet"
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    foreign = tmp_path / "foreign.parquet"
    pd.DataFrame({"pretoken": ["a"], "count": [1]}).to_parquet(foreign)
    other_tokenizer = tmp_path / "tokenizer.json"
    other_tokenizer.write_text("{}")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from lib.pretokens import read_pretoken_table; "
        "read_pretoken_table(sys.argv[2], tokenizer_json=sys.argv[3] if len(sys.argv) > 3 else None)"
    )
    for args, says in (
        ([cut], "not a readable parquet file"),
        ([foreign], "not a pre-token table written by 03"),
        ([path, other_tokenizer], "made with another tokenizer"),
        ([tmp_path / "none.parquet"], "run `make analyze`"),
    ):
        proc = subprocess.run(
            [sys.executable, "-c", code, str(ROOT), *map(str, args)], capture_output=True, text=True
        )
        assert proc.returncode != 0 and says in proc.stderr and "Traceback" not in proc.stderr, (
            proc.stderr
        )
        assert "re-run `make analyze`" in proc.stderr or "run `make analyze` first" in proc.stderr


def test_encoders_write_the_same_outputs(analyzed, tmp_path):
    import shutil

    from lib.pretokens import read_pretoken_table

    art = tmp_path / "art"
    shutil.copytree(analyzed / "tokenizers", art / "tokenizers")
    shutil.copytree(analyzed / "corpora", art / "corpora")
    run_script("03_analyze.py", "--artifacts", art, "--encoder", "tokenizers")
    for name in ("bpe_token_id_sequences.txt", "token_frequency.parquet"):
        assert (art / "analysis" / "reports" / name).read_bytes() == (
            analyzed / "analysis" / "reports" / name
        ).read_bytes()
    a, b = (
        read_pretoken_table(d / "analysis" / "reports" / "pretoken_table.parquet")
        for d in (art, analyzed)
    )
    assert a.pretokens == b.pretokens and a.all_ids() == b.all_ids()
    assert (a.counts == b.counts).all() and (a.doc_counts == b.doc_counts).all()


def test_a_long_document_without_newline_goes_through(analyzed, tmp_path, gpt2_bpe):
    """One 3 MB line (a minified file): its ids in one line, the table adds up."""
    import shutil

    from lib.pretokens import read_pretoken_table

    art = tmp_path / "art"
    shutil.copytree(analyzed / "tokenizers", art / "tokenizers")
    cleaned = art / "corpora" / "cleaned"
    cleaned.mkdir(parents=True)
    unit = "var a=function(b){return b*2};x.y<|endoftext|>z;  "
    doc = unit * (3_000_000 // len(unit))
    (cleaned / "train.jsonl").write_text(
        json.dumps({"text": doc}) + "\n" + json.dumps({"text": "tail"}) + "\n"
    )
    run_script("03_analyze.py", "--artifacts", art)
    lines = (art / "analysis" / "reports" / "bpe_token_id_sequences.txt").read_text().split("\n")
    assert (
        len(lines) == 3
        and lines[1] == " ".join(map(str, gpt2_bpe.encode("tail").ids))
        and lines[2] == ""
    )
    assert lines[0] == " ".join(map(str, gpt2_bpe.encode(doc).ids))
    table = read_pretoken_table(art / "analysis" / "reports" / "pretoken_table.parquet")
    assert (
        int((np.diff(table.ids_offsets) * table.counts).sum()) + table.meta["endoftext"]
        == table.meta["tokens"]
    )


def test_pretokens_are_tokenizers_own_on_new_unicode_characters(analyzed, tmp_path, gpt2_bpe):
    """gigatoken's pre-token counter reads U+A7CF and U+16EBB (new in Unicode) otherwise than tokenizers' regex;
    the table holds tokenizers' pre-tokens all the same, and the ids stay GPT-2's."""
    import shutil

    from lib.pretokens import read_pretoken_table

    art = tmp_path / "art"
    shutil.copytree(analyzed / "tokenizers", art / "tokenizers")
    cleaned = art / "corpora" / "cleaned"
    cleaned.mkdir(parents=True)
    docs = ['x = [" \ua7cf", "\U00016ebb",]\n', 'y = "\ua7cf\ua7cf"\n']
    (cleaned / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    run_script("03_analyze.py", "--artifacts", art)
    table = read_pretoken_table(art / "analysis" / "reports" / "pretoken_table.parquet")
    want = collections.Counter(w for d in docs for w in hf_pretokens(gpt2_bpe, d))
    assert dict(zip(table.pretokens, table.counts.tolist())) == dict(want)
    lines = (art / "analysis" / "reports" / "bpe_token_id_sequences.txt").read_text().splitlines()
    assert lines == [" ".join(map(str, gpt2_bpe.encode(d).ids)) for d in docs]
