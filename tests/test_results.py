"""scripts/results.py (make results): the README's results table comes from a run's artifacts, and only
the block between its markers changes."""

import shutil

from conftest import run_script

README = "# kit\n\nintro\n\n<!-- results:begin -->\nold table\n<!-- results:end -->\n\n## Next\n"


def test_table_is_generated_from_the_artifacts(distilled, tmp_path):
    import json

    art = tmp_path / "art"
    shutil.copytree(distilled[0] / "analysis", art / "analysis")
    for name in ("distill_certificates.json", "remap_report.json"):  # as after 04 alone
        (art / "analysis" / "reports" / name).unlink(missing_ok=True)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert (
        run_script(
            "results.py", "--artifacts", art, "--readme", readme, "--check", check=False
        ).returncode
        == 1
    )
    run_script("results.py", "--artifacts", art, "--readme", readme)
    text = readme.read_text()
    assert text.startswith("# kit\n\nintro\n\n<!-- results:begin -->\n") and text.endswith(
        "<!-- results:end -->\n\n## Next\n"
    )
    report = json.loads((art / "analysis" / "reports" / "distill_validation.json").read_text())
    held = 100 * report["heldout"]["pretoken_occurrence_agreement"]
    assert f"| 04 | held-out pre-token occurrences = GPT-2 BPE | {held:.4f}% |" in text
    assert "old table" not in text and "not run: make certify, 06, 08, baseline" in text
    assert (
        run_script(
            "results.py", "--artifacts", art, "--readme", readme, "--check", check=False
        ).returncode
        == 0
    )


def test_missing_inputs_are_one_line(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    proc = run_script("results.py", "--artifacts", tmp_path, "--readme", readme, check=False)
    assert (
        proc.returncode != 0 and "Traceback" not in proc.stderr and "results:begin" in proc.stderr
    )
    readme.write_text(README)
    proc = run_script("results.py", "--artifacts", tmp_path, "--readme", readme, check=False)
    assert "distill_validation.json is missing" in proc.stderr and readme.read_text() == README
    (tmp_path / "analysis" / "reports").mkdir(parents=True)
    (tmp_path / "analysis" / "reports" / "distill_validation.json").write_text("{truncated")
    proc = run_script("results.py", "--artifacts", tmp_path, "--readme", readme, check=False)
    assert "Traceback" not in proc.stderr and "not readable JSON" in proc.stderr
    assert readme.read_text() == README
