"""11 certify, run as a user runs it (`make certify`) on 04's quick output: the real GPT-2 conflict of the
fixture is certified on train and on held-out text with its exact multipliers, the scores are 04's, and a
missing distilled tokenizer is one line naming the step to run."""

import json
import shutil

import pytest

from conftest import run_script


@pytest.fixture(scope="module")
def certified(distilled):
    art, configs = distilled
    run_script("11_certify.py", "--artifacts", art, "--configs", configs, "--profile", "quick")
    reports = art / "analysis" / "reports"
    return json.loads((reports / "distill_certificates.json").read_text(encoding="utf-8")), reports


def test_train_conflict_certified(certified):
    """The fixture holds both sides of a real GPT-2 conflict: the one the tokenizer gets wrong is
    certified, and the conflict's rows carry exact multipliers."""
    cert, reports = certified
    assert cert["pieces"].get("DLLLIBRARY", cert["pieces"].get("STDLIB")) == "certified"
    rows = [r for c in cert["conflicts"] for r in c if r["piece"] in ("DLLLIBRARY", "STDLIB")]
    assert {r["piece"] for r in rows} == {"DLLLIBRARY", "STDLIB"}
    assert all(r["multiplier"] == "1" for r in rows)
    assert cert["classes"]["train"]["certified"] == {"pieces": 1, "occurrences": 1}
    md = (reports / "distill_certificates.md").read_text(encoding="utf-8")
    assert "## Wrong pieces by verdict" in md and "## Certified conflicts" in md


def test_unseen_conflict_certified(certified):
    """The held-out document holds DLLLIBRARY and STDLIB too: one is wrong there, and certified against
    the learning's examples."""
    cert, reports = certified
    unseen = cert["unseen"]
    assert unseen["wrong_unseen_pieces"] >= 1
    assert "certified" in {unseen["pieces"].get("DLLLIBRARY"), unseen["pieces"].get("STDLIB")}
    assert any({r["piece"] for r in c} == {"DLLLIBRARY", "STDLIB"} for c in unseen["conflicts"])
    assert cert["classes"]["unseen"]["certified"]["occurrences"] >= 1
    assert (
        "### Held-out and out-of-domain pieces" in (reports / "distill_certificates.md").read_text()
    )


def test_the_tokenizer_is_certified_as_written(certified, distilled):
    """The certificates name the distilled tokenizer they were made from, and 04's report points to them."""
    from lib.files import sha256_file

    cert, reports = certified
    tokenizer = distilled[0] / "tokenizers" / "distilled_unigram" / "tokenizer.json"
    assert cert["distilled_tokenizer_sha256"] == sha256_file(tokenizer)
    assert "make certify" in (reports / "distill_validation.md").read_text(encoding="utf-8")


def test_without_the_distilled_tokenizer_it_stops_with_one_line(distilled, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(distilled[0] / "tokenizers" / "original", art / "tokenizers" / "original")
    shutil.copytree(distilled[0] / "corpora", art / "corpora")
    shutil.copytree(distilled[0] / "analysis", art / "analysis")
    for name in ("distill_certificates.json", "distill_certificates.md"):
        (art / "analysis" / "reports" / name).unlink(missing_ok=True)  # the fixture's own run
    proc = run_script("11_certify.py", "--artifacts", art, "--configs", distilled[1], check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert last.startswith("error: ") and "distilled_unigram" in last and "make distill" in last
    assert not (art / "analysis" / "reports" / "distill_certificates.json").exists()
