"""04 distill, run as a user runs it: a Unigram tokenizer (no merges) that reproduces GPT-2's BPE on its
training pre-tokens, with the same vocab, special token and decode; the report covers out-of-domain text;
deterministic; bad inputs (id lines, a truncated or foreign pre-token table) fail with one line.

The step runs once on a tiny corpus with a quick profile (conftest's `distilled`) and once more for
determinism; the algorithms have their own test files (test_greedy_repair.py, test_exact_repair.py, ...)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from distill_fixture import FIXTURE_DOCS, HELDOUT_DOCS, QUICK, make_inputs, read_report

from conftest import ROOT, run_script
from lib.tokenizer import EOT, EOT_ID, VOCAB_SIZE, piece_bytes


def test_vocab_and_special_token_identical_no_merges(distilled, gpt2_bpe):
    from tokenizers import Tokenizer

    path = distilled[0] / "tokenizers" / "distilled_unigram" / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["model"]["type"] == "Unigram" and "merges" not in data["model"]
    tok = Tokenizer.from_file(str(path))
    assert tok.get_vocab(with_added_tokens=True) == gpt2_bpe.get_vocab(with_added_tokens=True)
    assert tok.get_vocab_size(with_added_tokens=True) == VOCAB_SIZE
    special = [t for t in data["added_tokens"] if t["special"]]
    assert [(t["id"], t["content"]) for t in special] == [(EOT_ID, EOT)]
    assert data["decoder"]["type"] == "ByteLevel"
    stages = data["pre_tokenizer"]["pretokenizers"]
    assert (
        stages[0]["type"] == "ByteLevel"
        and stages[0]["use_regex"]
        and not stages[0]["add_prefix_space"]
    )
    assert (
        stages[1]["type"] == "Split" and stages[1]["behavior"] == "Isolated"
    )  # the run split, in each pre-token
    assert len(stages) == 2


def test_reproduces_bpe_on_training_text(distilled, gpt2_bpe):
    """Every training pre-token and whole document, including runs inside longer pre-tokens
    (' +-----+---+', '/*****/', "('''"), 'ㅋㅋㅋㅋㅋ' and '————' (runs of a multi-byte character), but the
    one of 'DLLLIBRARY' / 'STDLIB' that no scores can give with the other (certified by 11:
    test_certify_step.py)."""
    from tokenizers import Tokenizer, pre_tokenizers

    tok = Tokenizer.from_file(
        str(distilled[0] / "tokenizers" / "distilled_unigram" / "tokenizer.json")
    )
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    words = sorted(
        {piece_bytes(w).decode() for d in FIXTURE_DOCS for w, _ in byte_level.pre_tokenize_str(d)}
    )
    bpe, uni = gpt2_bpe.encode_batch(words), tok.encode_batch(words)
    bad = [(w, b.tokens, u.tokens) for w, b, u in zip(words, bpe, uni) if b.ids != u.ids]
    assert len(bad) == 1 and bad[0][0] in ("DLLLIBRARY", "STDLIB")
    for doc in FIXTURE_DOCS[:-1]:
        assert tok.encode(doc).ids == gpt2_bpe.encode(doc).ids, doc


def test_report_agreement_decode_throughput(distilled):
    report = read_report(distilled[0])
    # all but the one certified conflict (test_certify_step.py): one pre-token, one document
    wrong = report["train"]["mismatches"]
    assert [c["occurrences"] for c in wrong.values()] == [1] and "certify" not in report
    assert report["train"]["document_agreement"] == (len(FIXTURE_DOCS) - 1) / len(FIXTURE_DOCS)
    assert report["train"]["ids_compared"] > 100 and report["heldout"]["documents"] == len(
        HELDOUT_DOCS
    )
    assert (
        report["train"]["documents"] == len(FIXTURE_DOCS)
        and report["train"]["pretoken_occurrences"] > 100
    )
    assert report["train"]["document_sample"] == {
        "documents_in_split": len(FIXTURE_DOCS),
        "sampled": len(FIXTURE_DOCS),
        "left_out_too_long": 0,
    }
    assert report["heldout"]["documents_left_out_too_long"] == 0
    assert set(report["phases_seconds"]) >= {
        "reading",
        "learning: greedy repair",
        "learning: exact repair",
        "validation: train",
        "validation: held-out",
    }
    assert (
        report["decode_identity"]["sequences"] == 3000
        and report["decode_identity"]["mismatches"] == 0
    )
    assert report["throughput"]["ratio"] > 0 and report["throughput"]["threads"] == 1
    assert report["split_conflicts"] == 0 and report["run_units"] > 100
    assert report["examples"]["vocab_strings"] == QUICK["vocab_example_limit"]
    assert report["loads_with_autotokenizer"] is True
    md = (distilled[0] / "analysis" / "reports" / "distill_validation.md").read_text(
        encoding="utf-8"
    )
    assert "Decode identity" in md and "| heldout |" in md and "Mismatches by class" in md
    assert f"a **sample** of {len(FIXTURE_DOCS)} of its {len(FIXTURE_DOCS)} documents" in md


def test_report_out_of_domain(distilled):
    """Each configured type is measured, its files listed with their bytes (duplicates left out, a .mo
    catalog read as its translations); a type with no file here is reported as skipped."""
    ood = read_report(distilled[0])["out_of_domain"]
    assert list(ood) == ["prose", "c_code", "korean", "emoji", "absent"]
    for kind in ("prose", "c_code", "korean", "emoji"):
        a = ood[kind]
        assert a["pretoken_occurrences"] > 0 and 0.9 < a["pretoken_occurrence_agreement"] <= 1.0
        assert a["documents"] == len(a["files"]) and a["ids_compared"] > 0
        assert all(n > 0 for _, n in a["files"])
    korean = [os.path.basename(p) for p, _ in ood["korean"]["files"]]
    assert korean == ["dup.txt", "ko.mo"]  # k.txt has dup.txt's text; ko.mo is read
    assert ood["korean"]["files"][1][1] == len("안녕하세요 ———\n파일\n".encode())
    assert [p for p, _ in ood["emoji"]["files"]] == ["generated:emoji/0", "generated:emoji/1"]
    assert ood["absent"]["files"] == [] and "skipped" in ood["absent"]["note"]
    md = (distilled[0] / "analysis" / "reports" / "distill_validation.md").read_text(
        encoding="utf-8"
    )
    assert "| out of domain: korean |" in md and "absent (no readable file here: skipped)" in md
    assert "ko.mo" in md


def test_emoji_text_is_deterministic_and_has_emoji():
    from lib.oodtext import emoji_docs

    a, b = emoji_docs(3, 20, 0), emoji_docs(3, 20, 0)
    assert a == b and a != emoji_docs(3, 20, 1)
    text = "".join(a)
    assert "\u200d" in text and "\ufe0f" in text and any(0x1F1E6 <= ord(c) <= 0x1F1FF for c in text)


def test_random_id_decode_identity(distilled, gpt2_bpe):
    import random

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(
        str(distilled[0] / "tokenizers" / "distilled_unigram" / "tokenizer.json")
    )
    rng = random.Random(1)
    seqs = [[rng.randrange(VOCAB_SIZE) for _ in range(rng.randint(1, 20))] for _ in range(2000)]
    seqs.append(
        [19526, EOT_ID, 254, 163, 227]
    )  # '\xe4\xbd' then EOT, bytes of a split multibyte char
    for skip in (False, True):
        assert tok.decode_batch(seqs, skip_special_tokens=skip) == gpt2_bpe.decode_batch(
            seqs, skip_special_tokens=skip
        )


def test_loads_with_autotokenizer(distilled, gpt2_bpe):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(distilled[0] / "tokenizers" / "distilled_unigram"))
    text = "x = '''\n\n\n#####<|endoftext|> 안녕 ㅋㅋㅋ"
    assert hf(text)["input_ids"] == gpt2_bpe.encode(text).ids
    assert hf.eos_token == EOT and hf.convert_tokens_to_ids(EOT) == EOT_ID


def test_distilled_tokenizer_gives_the_same_ids_in_tokenizers_js(distilled):
    """04's own check ran (the report), and the tricky texts and the fixture's documents agree here too."""
    from lib.parity import compare, js_runtime_missing, tricky_texts

    if js_runtime_missing():
        pytest.skip(js_runtime_missing())
    art, _ = distilled
    report = json.loads((art / "analysis" / "reports" / "distill_validation.json").read_text())
    assert report["js_parity"]["checked"] and report["js_parity"]["documents_differ"] == 0
    assert set(report["js_parity"]["by_kind"]) >= {"held-out", "tricky"}
    assert (
        "## Where the tokenizer runs"
        in (art / "analysis" / "reports" / "distill_validation.md").read_text()
    )
    units = ["-", "=", "#", "*", "ãħĭ", "âĢĶ", "âĶĢ", "0", "f", "l", "s"]
    texts = tricky_texts(units) + FIXTURE_DOCS + HELDOUT_DOCS
    got = compare(art / "tokenizers" / "distilled_unigram", texts)
    assert got["documents"] == len(texts) and got["documents_differ"] == 0, got["first"]


def test_deterministic(distilled, tmp_path, gpt2_bpe):
    """Byte-identical tokenizer.json from a second run, in another process with another hash seed."""
    art, configs = distilled
    other = tmp_path / "art"
    make_inputs(other, gpt2_bpe)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "04_distill.py"),
            "--artifacts",
            str(other),
            "--configs",
            str(configs),
            "--profile",
            "quick",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    a = (art / "tokenizers" / "distilled_unigram" / "tokenizer.json").read_bytes()
    b = (other / "tokenizers" / "distilled_unigram" / "tokenizer.json").read_bytes()
    assert a == b


def test_bad_input_stops_the_step_with_one_line(distilled, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(distilled[0] / "tokenizers" / "original", art / "tokenizers" / "original")
    shutil.copytree(distilled[0] / "corpora", art / "corpora")
    (art / "analysis" / "reports").mkdir(parents=True)
    shutil.copy(
        distilled[0] / "analysis" / "reports" / "pretoken_table.parquet",
        art / "analysis" / "reports",
    )
    (art / "analysis" / "reports" / "bpe_token_id_sequences.txt").write_text("1 2 x\n")
    last = failed_step(art)
    assert ":1: not a line of space-separated token ids" in last


def failed_step(art):
    """Run 04 on art, expect a one-line error and no tokenizer; return that line."""
    proc = run_script("04_distill.py", "--artifacts", art, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr[-500:]
    assert not (art / "tokenizers" / "distilled_unigram").exists()
    return last


@pytest.mark.parametrize("damage", ["truncated", "foreign parquet", "other tokenizer", "missing"])
def test_bad_pretoken_table_stops_the_step_with_one_line(distilled, tmp_path, damage):
    """A truncated, foreign, mismatched or missing table: one line naming the file and `make analyze`."""
    import pandas as pd

    art = tmp_path / "art"
    shutil.copytree(distilled[0] / "tokenizers" / "original", art / "tokenizers" / "original")
    shutil.copytree(distilled[0] / "corpora", art / "corpora")
    shutil.copytree(distilled[0] / "analysis" / "reports", art / "analysis" / "reports")
    table = art / "analysis" / "reports" / "pretoken_table.parquet"
    if damage == "truncated":
        table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    elif damage == "foreign parquet":
        pd.DataFrame({"pretoken": ["a"], "count": [1]}).to_parquet(table)
    elif damage == "other tokenizer":
        tok = art / "tokenizers" / "original" / "tokenizer.json"
        tok.write_text(
            tok.read_text(encoding="utf-8").replace('"Ġthe"', '"Ġthe" ', 1), encoding="utf-8"
        )
    else:
        table.unlink()
    last = failed_step(art)
    assert "pretoken_table.parquet" in last and "make analyze" in last, last


def test_not_gpt2_tokenizer_is_refused(distilled, tmp_path):
    from tokenizers import Tokenizer, models

    from lib.gpt2_bpe import read_original

    art = tmp_path / "art"
    shutil.copytree(distilled[0] / "corpora", art / "corpora")
    shutil.copytree(distilled[0] / "analysis", art / "analysis")
    (art / "tokenizers" / "original").mkdir(parents=True)
    Tokenizer(models.BPE({"a": 0, "b": 1}, [])).save(
        str(art / "tokenizers" / "original" / "tokenizer.json")
    )
    proc = run_script("04_distill.py", "--artifacts", art, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (art / "tokenizers" / "distilled_unigram").exists()
    (art / "tokenizers" / "original" / "tokenizer.json").write_text("{not json")
    with pytest.raises(SystemExit) as e:
        read_original(art / "tokenizers" / "original")
    assert str(e.value).startswith("error: ") and "not a readable tokenizers file" in str(e.value)
