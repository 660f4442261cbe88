"""The Makefile is a DAG of files: incremental, exact about what is stale, movable with ARTIFACTS=."""

import shutil

import pytest

from conftest import ROOT, run_make, write_raw_corpus

STEPS = ("01_init.py", "02_corpus.py", "03_analyze.py")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """01-03 built by make in a temp ARTIFACTS dir, smoke profile, a private configs copy and a small corpus."""
    tmp = tmp_path_factory.mktemp("make")
    art, configs = tmp / "artifacts", tmp / "configs"
    shutil.copytree(ROOT / "configs", configs)
    write_raw_corpus(art / "corpora" / "raw")
    (configs / "smoke" / "corpus.yaml").write_text("heldout_ratio: 0.3\n")
    args = [f"ARTIFACTS={art}", f"CONFIGS={configs}", "PROFILE=smoke"]
    run_make("analyze", *args)
    return art, configs, args


def scripts_run(*make_args):
    """Which step scripts `make` runs (really: GNU Make 4.3's -n does not follow grouped targets)."""
    out = run_make(*make_args).stdout
    return [s for s in STEPS if s in out]


def test_second_run_does_nothing(pipeline):
    art, _, args = pipeline
    assert scripts_run("analyze", *args) == []
    assert (
        run_make(
            "-q", art / "analysis/reports/token_frequency.parquet", *args, check=False
        ).returncode
        == 0
    )
    assert "Nothing to be done" in run_make("analyze", *args).stdout
    for step in ("01_init", "02_corpus", "03_analyze"):
        assert (art / "logs" / f"{step}.log").exists()


def test_config_edit_reruns_that_step_and_downstream_only(pipeline):
    _, configs, args = pipeline
    (configs / "analyze.yaml").touch()
    assert scripts_run("analyze", *args) == ["03_analyze.py"]
    (configs / "smoke" / "corpus.yaml").touch()
    assert scripts_run("analyze", *args) == ["02_corpus.py", "03_analyze.py"]
    assert scripts_run("analyze", *args) == []


def test_script_or_lib_edit_reruns_dependants(pipeline):
    _, _, args = pipeline
    assert scripts_run("-W", "scripts/02_corpus.py", "analyze", *args) == [
        "02_corpus.py",
        "03_analyze.py",
    ]
    assert scripts_run("-W", "lib/tokenizer.py", "analyze", *args) == [
        "01_init.py",
        "03_analyze.py",
    ]
    assert scripts_run("-W", "lib/config.py", "analyze", *args) == list(STEPS)


def test_deleted_or_half_written_artifact_rebuilds_only_it(pipeline):
    art, _, args = pipeline
    freq = art / "analysis/reports/token_frequency.parquet"
    freq.rename(freq.with_name(freq.name + ".partial"))  # as a kill -9 would leave it
    assert run_make("-q", "analyze", *args, check=False).returncode != 0
    assert scripts_run("analyze", *args) == ["03_analyze.py"]
    assert freq.exists() and not freq.with_name(freq.name + ".partial").exists()
    assert scripts_run("analyze", *args) == []


def test_new_raw_file_reruns_corpus(pipeline):
    art, _, args = pipeline
    (art / "corpora" / "raw" / "new.txt").write_text("print('a new document')\n")
    assert scripts_run("analyze", *args) == ["02_corpus.py", "03_analyze.py"]
    assert scripts_run("analyze", *args) == []


def test_profile_switch_rebuilds(pipeline):
    art, _, args = pipeline
    other = [a for a in args if not a.startswith("PROFILE=")] + ["PROFILE=default"]
    assert scripts_run("analyze", *other) == list(STEPS)
    assert scripts_run("analyze", *args) == list(STEPS)  # and back
    assert scripts_run("analyze", *args) == []


def test_clean_keeps_raw_corpus(tmp_path):
    art = tmp_path / "artifacts"
    write_raw_corpus(art / "corpora" / "raw")
    for d in ("analysis/reports", "corpora/cleaned", "logs"):
        (art / d).mkdir(parents=True)
        (art / d / "x").write_text("x")
    run_make("clean", f"ARTIFACTS={art}")
    assert sorted(p.name for p in art.iterdir()) == ["corpora"]
    assert [p.name for p in (art / "corpora").iterdir()] == ["raw"]
    assert (art / "corpora" / "raw" / "more.jsonl").exists()


def test_help_lists_targets():
    out = run_make("help").stdout
    for target in ("all", "test", "clean", "venv", "analyze"):
        assert f"\n  {target}" in out


def lib_imports(path):
    """The lib/ files a Python file imports: `from lib.x import y`, `from lib import x`, `import lib.x`."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lib":
            if node.module == "lib":
                out |= {f"lib/{a.name}.py" for a in node.names}
            else:
                out.add(node.module.replace(".", "/") + ".py")
        elif isinstance(node, ast.Import):
            out |= {
                a.name.replace(".", "/") + ".py" for a in node.names if a.name.startswith("lib.")
            }
    return out


def test_rules_list_exactly_the_lib_files_their_script_imports(tmp_path):
    """Each step's rule names its script's transitive lib/ imports as prerequisites, no more, no fewer:
    an edit of a lib file re-runs exactly the steps that use it."""
    import re

    db = run_make(
        "-pn", f"ARTIFACTS={tmp_path}", "help"
    ).stdout  # make's database, variables expanded
    rules = {}
    for line in db.splitlines():
        m = re.match(r"^([^#\s][^:=]*?)\s*&?:(?!=)\s*(.*)$", line)
        prereqs = m.group(2).split("|")[0].split() if m else []
        if prereqs and prereqs[0].startswith("scripts/") and prereqs[0].endswith(".py"):
            rules.setdefault(prereqs[0], set()).update(p for p in prereqs if p.startswith("lib/"))
    assert {f"scripts/{p.name}" for p in (ROOT / "scripts").glob("[01][0-9]_*.py")} <= set(rules)
    for script, listed in rules.items():
        want, todo = {"lib/__init__.py"}, list(lib_imports(ROOT / script))
        while todo:
            path = todo.pop()
            if path not in want:
                want.add(path)
                todo += lib_imports(ROOT / path)
        assert listed == want, (
            script,
            "missing",
            sorted(want - listed),
            "extra",
            sorted(listed - want),
        )
