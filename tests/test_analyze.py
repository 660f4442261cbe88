"""03 analyze: the id sequences are GPT-2's, the frequency table is complete, bad inputs fail cleanly."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import ROOT, run_script
from lib.tokenizer import EOT_ID, VOCAB_SIZE


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
    docs = [json.loads(l)["text"] for l in (analyzed / "corpora" / "cleaned" / "train.jsonl").read_text().splitlines()]
    lines = (analyzed / "analysis" / "reports" / "bpe_token_id_sequences.txt").read_text().split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(docs)
    for doc, line in zip(docs, lines):
        assert [int(t) for t in line.split()] == gpt2_bpe.encode(doc).ids


def test_frequency_table_counts_every_id(analyzed, gpt2_bpe):
    table = pd.read_parquet(analyzed / "analysis" / "reports" / "token_frequency.parquet")
    assert list(table.columns) == ["token_id", "token", "count", "doc_count", "frequency"]
    assert len(table) == VOCAB_SIZE and list(table.token_id) == list(range(VOCAB_SIZE))
    docs = [json.loads(l)["text"] for l in (analyzed / "corpora" / "cleaned" / "train.jsonl").read_text().splitlines()]
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
    Tokenizer(models.BPE({"a": 0, "b": 1}, [])).save(str(art / "tokenizers" / "original" / "tokenizer.json"))
    proc = run_script("03_analyze.py", "--artifacts", art, check=False)
    assert proc.returncode != 0 and "vocab size 2 is not GPT-2's 50,257" in proc.stderr and "Traceback" not in proc.stderr
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
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "03_analyze.py"), "--artifacts", str(art), "--batch-docs", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = reports / "bpe_token_id_sequences.txt.partial"
    deadline = time.time() + 60
    while not (partial.exists() and partial.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.05)
    workers = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
    assert workers, "the fast path's worker processes should be running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert partial.exists(), "the step ended before it could be killed"
    deadline = time.time() + 10  # its worker processes die with it
    while any(os.path.exists(f"/proc/{w}") for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{w}") for w in workers)
    assert not (reports / "bpe_token_id_sequences.txt").exists()
    assert not (reports / "token_frequency.parquet").exists()
    run_script("03_analyze.py", "--artifacts", art)
    assert not partial.exists()
    lines = (reports / "bpe_token_id_sequences.txt").read_text().splitlines()
    assert len(lines) == len(docs)


TRICKY = ["def f(x):\n\tif x:\n        return x  # ====\n\n\n   \n", "it's they're we'll I'd 'S 'll",
          "a<|endoftext|>b <|endoftext|>\n<|endoftext|>", "<|endoftext|>", "", " ", "\r\n\r\n  x  ", "   trailing   ",
          "안녕하세요 세계! 你好，世界。 😀🎉👩‍👩‍👧 ㅋㅋㅋㅋ ————", "12345 1,000,000 3.14159 x²", "\u2028 \u00a0 \x00\x01 \ufeff",
          "x\x1c\x1fy \x85z\u3000 \u3000w\u200b v\t \n", "end with spaces  \n\n  ", "\n\n\nx",
          "nul\x00 as text \x00\x00 x\x00\n \x00", "a \x00's \x00 \n\n\x00 é\x00中"]  # NUL: the fast path's separator


def load_analyze():
    import importlib.util

    spec = importlib.util.spec_from_file_location("analyze", ROOT / "scripts" / "03_analyze.py")
    analyze = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(analyze)
    return analyze


def test_fast_path_is_gpt2_bpe(gpt2_bpe):
    """The fast path (cached chunks, GPT-2's regex, cached BPE per pre-token) gives tokenizers' ids and counts,
    special token and odd whitespace included."""
    analyze = load_analyze()
    rng = random.Random(0)
    ascii_text = ["".join(rng.choice("".join(map(chr, range(128)))) for _ in range(200)) for _ in range(50)]
    # whitespace runs that end a text: before the separator they must split as at the end of a text
    trailing = [f"x{i}" + " " * (2 + i % 30) + "\n" * (1 + i // 30) for i in range(60)]
    texts = TRICKY + [t * 3 for t in TRICKY] + ["".join(TRICKY)] + ascii_text + trailing
    fast = analyze.FastGPT2(gpt2_bpe.model, max_cache=8)  # a tiny cache: it is cleared on the way
    for text in texts:
        assert fast.encode(text) == gpt2_bpe.encode(text).ids, text
        fast.encode_batch([])  # a batch boundary: where the full cache is cleared
    # a whole batch at once (new chunks pre-tokenized together), and its counts
    fast = analyze.FastGPT2(gpt2_bpe.model)
    got = fast.encode_batch(texts)
    want = analyze.encoded_result([e.ids for e in gpt2_bpe.encode_batch(texts)])
    assert got[0] == want[0] and got[3] == want[3]
    assert (got[1] == want[1]).all() and (got[2] == want[2]).all()


def test_vocab_entry_is_its_own_id_only_where_bpe_says_so(gpt2_bpe):
    """The fast path takes a pre-token that is a vocab entry as its own id, without BPE: true of every GPT-2
    entry; a BPE where an entry is not reached by its merges goes through BPE."""
    from tokenizers import models

    vocab = gpt2_bpe.get_vocab()
    wrong = [entry for entry, i in vocab.items() if i != EOT_ID and [t.id for t in gpt2_bpe.model.tokenize(entry)] != [i]]
    assert len(vocab) == VOCAB_SIZE and wrong == []
    analyze = load_analyze()
    assert analyze.FastGPT2(gpt2_bpe.model).entries_whole
    unmerged = analyze.FastGPT2(models.BPE({"a": 0, "b": 1, "ab": 2}, []))  # "ab" is in the vocab, no merge makes it
    assert not unmerged.entries_whole and unmerged.encode("ab") == [0, 1]


def test_fast_path_and_tokenizers_write_the_same_files(analyzed, tmp_path):
    import shutil

    art = tmp_path / "art"
    shutil.copytree(analyzed / "tokenizers", art / "tokenizers")
    shutil.copytree(analyzed / "corpora", art / "corpora")
    run_script("03_analyze.py", "--artifacts", art, "--no-fast-path")
    for name in ("bpe_token_id_sequences.txt", "token_frequency.parquet"):
        assert (art / "analysis" / "reports" / name).read_bytes() == (analyzed / "analysis" / "reports" / name).read_bytes()
