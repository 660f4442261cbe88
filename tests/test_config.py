"""Configs: strict keys and types, profile and command-line layers, the resolved copy."""

import pytest
import yaml

from lib.config import load_config, save_config


def test_layers_override_in_order(configs_copy):
    (configs_copy / "smoke" / "analyze.yaml").write_text("batch_docs: 7\n")
    assert load_config("analyze", "default", configs_copy)["batch_docs"] == 512
    assert load_config("analyze", "smoke", configs_copy)["batch_docs"] == 7
    assert (
        load_config("analyze", "smoke", configs_copy, {"batch_docs": 3, "batch_bytes": None})[
            "batch_docs"
        ]
        == 3
    )


def test_unknown_key_names_file_and_key(configs_copy, capsys):
    (configs_copy / "smoke" / "analyze.yaml").write_text("batch_dcos: 7\n")
    with pytest.raises(SystemExit) as e:
        load_config("analyze", "smoke", configs_copy)
    assert (
        "analyze.yaml" in str(e.value)
        and "batch_dcos" in str(e.value)
        and "batch_docs" in str(e.value)
    )


@pytest.mark.parametrize("value", ["'many'", "true", "1.5", "[1]"])
def test_wrong_type_names_key(configs_copy, value):
    (configs_copy / "smoke" / "analyze.yaml").write_text(f"batch_docs: {value}\n")
    with pytest.raises(SystemExit) as e:
        load_config("analyze", "smoke", configs_copy)
    assert "smoke/analyze.yaml:1: key 'batch_docs' must be an integer" in str(e.value)


def test_int_accepted_for_float_and_bad_yaml(configs_copy):
    (configs_copy / "smoke" / "train.yaml").write_text("lr: 1\n")
    assert load_config("train", "smoke", configs_copy)["lr"] == 1.0
    (configs_copy / "smoke" / "corpus.yaml").write_text("heldout_ratio: [\n")
    with pytest.raises(SystemExit) as e:
        load_config("corpus", "smoke", configs_copy)
    assert "corpus.yaml" in str(e.value) and "not valid YAML" in str(e.value)


def test_unknown_profile(configs_copy):
    with pytest.raises(SystemExit) as e:
        load_config("analyze", "nosuch", configs_copy)
    assert "unknown profile 'nosuch'" in str(e.value)


def test_saved_config_round_trips(configs_copy, tmp_path):
    cfg = load_config("corpus", "smoke", configs_copy)
    save_config(cfg, tmp_path / "c.yaml", "02_corpus", "smoke")
    assert yaml.safe_load((tmp_path / "c.yaml").read_text()) == cfg
    assert not list(tmp_path.glob("*.partial"))


# --- the schema (lib/schema.py) on every layer: the base file users edit included


def append(path, line):
    path.write_text(path.read_text() + line + "\n")


@pytest.mark.parametrize(
    "step, line, says",
    [
        (
            "select",
            "num_reasign: 500",
            "unknown key 'num_reasign' for step 'select' (did you mean 'num_reassign'?)",
        ),
        ("select", "num_reassign: lots", "key 'num_reassign' must be an integer, got 'lots'"),
        ("distill", "margin_rel: 0", "key 'margin_rel' must be above 2.2e-16, got 0"),
        ("distill", "ood_sources: {prose: /usr/share/doc}", "key 'ood_sources' must be a list"),
        (
            "corpus",
            "heldout_fraction: 0.2",
            "unknown key 'heldout_fraction' for step 'corpus' (did you mean 'heldout_ratio'?)",
        ),
        (
            "analyze",
            "batchdocs: 64",
            "unknown key 'batchdocs' for step 'analyze' (did you mean 'batch_docs'?)",
        ),
        (
            "corpus",
            'heldout_ratio: "a tenth"',
            "key 'heldout_ratio' must be a number, got 'a tenth'",
        ),
        ("align", "block_size: 0", "key 'block_size' must be at least 2, got 0"),
        ("corpus", "max_bytes: -3", "key 'max_bytes' must be at least 0, got -3"),
        ("remap", "fuzz_texts: -1", "key 'fuzz_texts' must be at least 0, got -1"),
        (
            "analyze",
            "encoder: tiktoken",
            "key 'encoder' must be one of 'gigatoken' or 'tokenizers', got 'tiktoken'",
        ),
        ("train", "schedule: cosin", "key 'schedule' must be one of"),
        ("init", "tiny_n_head: 3", "tiny_n_embd (64) must be a multiple of tiny_n_head (3)"),
        ("align", "compare_strategies: []", "init_strategy 'best' needs compare_strategies"),
        ("align", "td_output_weight: 0", "needs td_output_weight or td_hidden_weight above 0"),
    ],
)
def test_bad_value_in_the_base_file_names_file_line_and_key(configs_copy, step, line, says):
    path = configs_copy / f"{step}.yaml"
    append(path, line)
    with pytest.raises(SystemExit) as e:
        load_config(step, "default", configs_copy)
    message = str(e.value)
    n_lines = len(path.read_text().splitlines())
    assert (
        message.startswith(f"error: {path}:{n_lines}: ") and says in message and "\n" not in message
    ), message


def test_flags_are_checked_too(configs_copy):
    with pytest.raises(SystemExit) as e:
        load_config("analyze", "default", configs_copy, {"workers": -1})
    assert "command line: key 'workers' must be at least 0, got -1" in str(e.value)


def test_bad_config_stops_a_step_with_one_line_and_writes_nothing(configs_copy, tmp_path):
    from conftest import run_script

    append(configs_copy / "corpus.yaml", "heldout_ratio: 2")
    proc = run_script(
        "02_corpus.py", "--artifacts", tmp_path / "art", "--configs", configs_copy, check=False
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "key 'heldout_ratio' must be below 1.0, got 2" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "art" / "corpora").exists()


def test_yaml_files_and_schemas_agree():
    """Every configs/<step>.yaml lists exactly its schema's keys with its defaults (the file is the commented copy)."""
    from lib.paths import CONFIGS
    from lib.schema import STEPS

    for step, schema in STEPS.items():
        data = yaml.safe_load((CONFIGS / f"{step}.yaml").read_text())
        defaults = schema().model_dump()
        assert sorted(data) == sorted(defaults), (
            f"configs/{step}.yaml keys differ from lib/schema.py"
        )
        for key, value in defaults.items():
            assert data[key] == value, (
                f"configs/{step}.yaml: {key} is {data[key]!r}, the schema's default {value!r}"
            )
        for key in schema.model_fields:
            assert key in (CONFIGS / f"{step}.yaml").read_text(), key
