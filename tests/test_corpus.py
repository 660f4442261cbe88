"""02 corpus: every format, cleaning rules, the split and the manifest, and bad files."""

import json

import pytest

from conftest import SAMPLE_DOCS, run_script


def corpus(art, raw, *extra, check=True):
    return run_script(
        "02_corpus.py",
        "--artifacts",
        art,
        "--raw-dir",
        raw,
        "--heldout-ratio",
        0.3,
        *extra,
        check=check,
    )


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_formats_dedupe_empty_and_split(tmp_path, raw_corpus):
    (raw_corpus / "crlf.txt").write_bytes(b"line one\r\nline two\rthree\r\n")
    corpus(tmp_path, raw_corpus)
    cleaned = tmp_path / "corpora" / "cleaned"
    train, heldout = read(cleaned / "train.jsonl"), read(cleaned / "heldout.jsonl")
    texts = [d["text"] for d in train + heldout]
    assert (
        len(texts) == len(set(texts)) == 8 + 40 + 1
    )  # samples + parquet rows + crlf; duplicate and empty dropped
    assert set(SAMPLE_DOCS) <= set(texts)  # byte-exact
    assert "line one\nline two\nthree\n" in texts
    assert heldout and train
    manifest = json.loads((cleaned / "manifest.json").read_text())
    assert manifest["fates"]["document duplicate"] == 1 and manifest["fates"]["document empty"] == 1
    assert {f["path"] for f in manifest["files"]} >= {
        "more.jsonl",
        "extra.parquet",
        "notes.md",
        "crlf.txt",
    }
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in manifest["files"])
    assert manifest["totals"]["train"]["documents"] == len(train)
    # deterministic: the same split again
    corpus(tmp_path / "again", raw_corpus)
    assert read(tmp_path / "again" / "corpora" / "cleaned" / "heldout.jsonl") == heldout


def test_bad_files_are_skipped_and_reported(tmp_path, raw_corpus):
    (raw_corpus / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    (raw_corpus / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (raw_corpus / "table.csv").write_text("a,b\n")
    proc = corpus(tmp_path, raw_corpus)
    assert (
        "latin1.txt: skipped, not UTF-8" in proc.stderr
        and "blob.txt: skipped, binary" in proc.stderr
    )
    manifest = json.loads((tmp_path / "corpora" / "cleaned" / "manifest.json").read_text())
    fates = {f["path"]: f["fate"] for f in manifest["files"]}
    assert (
        fates["latin1.txt"].startswith("rejected: not UTF-8")
        and fates["blob.txt"] == "rejected: binary"
    )
    assert fates["table.csv"].startswith("rejected: unsupported extension")


def test_strict_mode_stops_at_first_bad_file(tmp_path, raw_corpus, configs_copy):
    (raw_corpus / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    (configs_copy / "smoke" / "corpus.yaml").write_text("strict: true\n")
    proc = corpus(
        tmp_path, raw_corpus, "--profile", "smoke", "--configs", configs_copy, check=False
    )
    assert (
        proc.returncode != 0
        and "latin1.txt: not UTF-8" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert not (tmp_path / "corpora" / "cleaned").exists()


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"text": "ok"}\n{not json}\n', "more.jsonl:2: not JSON"),
        ('{"body": "no text field"}\n', "more.jsonl:1: no string field 'text'"),
        ('{"text": "ok"}\n{"text": "caf\xe9"}\n'.encode("latin-1"), "more.jsonl:2: not UTF-8"),
    ],
)
def test_bad_jsonl_names_file_and_line(tmp_path, raw_corpus, line, message):
    (raw_corpus / "more.jsonl").write_bytes(line if isinstance(line, bytes) else line.encode())
    proc = corpus(tmp_path, raw_corpus, check=False)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()[-1]) < 300
    assert not (tmp_path / "corpora" / "cleaned").exists()


def test_all_rejected_and_empty_corpus(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    proc = run_script(
        "02_corpus.py", "--artifacts", tmp_path, "--raw-dir", raw, "--source", "raw", check=False
    )
    assert proc.returncode != 0 and "no corpus files" in proc.stderr
    (raw / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    (raw / "empty.txt").write_text("  \n")
    proc = run_script("02_corpus.py", "--artifacts", tmp_path, "--raw-dir", raw, check=False)
    assert (
        proc.returncode != 0
        and "no document survived cleaning" in proc.stderr
        and "Traceback" not in proc.stderr
    )


def test_stdlib_default_corpus_with_cap(tmp_path):
    run_script(
        "02_corpus.py",
        "--artifacts",
        tmp_path,
        "--raw-dir",
        tmp_path / "none",
        "--max-bytes",
        200_000,
    )
    manifest = json.loads((tmp_path / "corpora" / "cleaned" / "manifest.json").read_text())
    assert manifest["source"] == "stdlib" and manifest["python"]
    kept = sum(s["bytes"] for s in manifest["totals"].values())
    assert 200_000 <= kept < 200_000 + 1_000_000  # stops at the first document past the cap
    assert any(f["fate"] == "not read: max_bytes reached" for f in manifest["files"])
