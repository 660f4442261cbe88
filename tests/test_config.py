"""Configs: strict keys and types, profile and command-line layers, the resolved copy."""

import pytest
import yaml

from lib.config import load_config, save_config


def test_layers_override_in_order(configs_copy):
    (configs_copy / "smoke" / "analyze.yaml").write_text("batch_docs: 7\n")
    assert load_config("analyze", "default", configs_copy)["batch_docs"] == 512
    assert load_config("analyze", "smoke", configs_copy)["batch_docs"] == 7
    assert load_config("analyze", "smoke", configs_copy, {"batch_docs": 3, "batch_bytes": None})["batch_docs"] == 3


def test_unknown_key_names_file_and_key(configs_copy, capsys):
    (configs_copy / "smoke" / "analyze.yaml").write_text("batch_dcos: 7\n")
    with pytest.raises(SystemExit) as e:
        load_config("analyze", "smoke", configs_copy)
    assert "analyze.yaml" in str(e.value) and "batch_dcos" in str(e.value) and "batch_docs" in str(e.value)


@pytest.mark.parametrize("value", ["'many'", "true", "1.5", "[1]"])
def test_wrong_type_names_key(configs_copy, value):
    (configs_copy / "smoke" / "analyze.yaml").write_text(f"batch_docs: {value}\n")
    with pytest.raises(SystemExit) as e:
        load_config("analyze", "smoke", configs_copy)
    assert "batch_docs" in str(e.value) and "must be int" in str(e.value)


def test_int_accepted_for_float_and_bad_yaml(configs_copy):
    (configs_copy / "smoke" / "corpus.yaml").write_text("heldout_ratio: 1\n")
    assert load_config("corpus", "smoke", configs_copy)["heldout_ratio"] == 1.0
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
