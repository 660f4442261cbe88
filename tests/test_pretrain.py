"""10 pretrain (the mini profile's stand-in): deterministic for a seed, resumes exactly after kill -9, keeps the
domain out of its text, and the mini model is found (or its absence explained) by 07 and 08's model source.

The runs pretrain a toy GPT-2 (1 layer, n_embd 16, full vocab) for 6 steps on generated text files, as
subprocesses, the way Make runs them.
"""

import json
import random
import shutil
import sysconfig
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_script

WORDS = (
    "the model reads text and learns which token comes next so that a small stand in knows the tokens "
    "of gpt two before any domain is seen license docs manual page header function value returns"
).split()


def toy_profile(text_dir, **extra):
    lines = {
        "n_layer": 1,
        "n_head": 1,
        "n_embd": 16,
        "n_positions": 32,
        "max_bytes_per_source": 40000,
        "min_train_bytes": 1000,
        "heldout_ratio": 0.3,
        "gpu_overrides": {},
        "max_train_bytes": 0,
        "max_steps": 6,
        "block_size": 16,
        "per_device_batch_size": 2,
        "grad_accum_steps": 1,
        "eval_interval": 2,
        "eval_max_bytes": 2000,
        "checkpoint_interval": 2,
        "keep_checkpoints": 2,
        "log_interval": 1,
        "sources": {"toy": [f"{text_dir}/*.txt"]},
        **extra,
    }
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in lines.items())


@pytest.fixture(scope="module")
def setup(tmp_path_factory, gpt2_bpe):
    from lib.tokenizer import save_hf_tokenizer

    tmp = tmp_path_factory.mktemp("pretrain")
    text_dir = tmp / "text"
    text_dir.mkdir()
    rng = random.Random(0)
    for k in range(20):
        (text_dir / f"doc{k:02d}.txt").write_text(
            " ".join(rng.choice(WORDS) for _ in range(150)) + "\n"
        )
    configs = tmp / "configs"
    shutil.copytree(ROOT / "configs", configs)
    (configs / "test").mkdir()
    (configs / "test" / "pretrain.yaml").write_text(toy_profile(text_dir))
    original = tmp / "tokenizers-original"
    save_hf_tokenizer(gpt2_bpe, original)
    return tmp, configs, original


def artifacts_with_tokenizer(setup, name):
    tmp, _, original = setup
    art = tmp / name
    shutil.copytree(original, art / "tokenizers" / "original")
    return art


def pretrain(art, configs, *args, check=True):
    return run_script(
        "10_pretrain.py",
        "--artifacts",
        art,
        "--profile",
        "test",
        "--configs",
        configs,
        *args,
        check=check,
    )


def weights(art):
    from safetensors.torch import load_file

    return load_file(str(art / "models" / "mini-gpt2" / "model.safetensors"))


def assert_one_line_error(proc, *phrases):
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for phrase in phrases:
        assert phrase in last, last


@pytest.fixture(scope="module")
def uninterrupted(setup):
    _, configs, _ = setup
    art = artifacts_with_tokenizer(setup, "uninterrupted")
    pretrain(art, configs)
    return art


# -----------------------------------------------------------------------------


def test_outputs_and_the_model_loads(uninterrupted):
    from transformers import AutoModelForCausalLM

    art = uninterrupted
    summary = json.loads((art / "training" / "pretrain" / "summary.json").read_text())
    assert (
        summary["stand_in"] == "mini" and summary["steps"] == 6 and summary["shape"]["n_embd"] == 16
    )
    assert summary["heldout"]["bits_per_byte"] < summary["heldout"]["initial_bits_per_byte"]
    assert (art / "training" / "pretrain" / "loss_curve.png").stat().st_size > 1000
    manifest = json.loads((art / "corpora" / "general" / "manifest.json").read_text())
    assert len(manifest["files"]) == 20 and all(len(f["sha256"]) == 64 for f in manifest["files"])
    assert {f["split"] for f in manifest["files"]} == {"train", "heldout"}
    model = AutoModelForCausalLM.from_pretrained(str(art / "models" / "mini-gpt2"))
    assert model.config.vocab_size == 50257 and model.lm_head.weight is model.transformer.wte.weight


def test_deterministic_and_resumes_exactly_after_kill(setup, uninterrupted):
    _, configs, _ = setup
    art = artifacts_with_tokenizer(setup, "killed")
    killed = pretrain(art, configs, "--debug-kill-after-step", 3, check=False)
    assert killed.returncode == -9  # SIGKILL after step 3; the last checkpoint is step 2
    assert (
        not (art / "models" / "mini-gpt2").exists()
        and not (art / "training" / "pretrain" / "summary.json").exists()
    )
    resumed = pretrain(art, configs)
    assert "(step 2 of 6)" in resumed.stderr
    assert json.loads((art / "training" / "pretrain" / "summary.json").read_text())[
        "resumed_from_steps"
    ] == [2]
    a, b = (
        weights(uninterrupted),
        weights(art),
    )  # a separate process from the same seed, killed and resumed
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_another_seed_gives_other_weights(setup, uninterrupted):
    _, configs, _ = setup
    art = artifacts_with_tokenizer(setup, "seed1")
    pretrain(art, configs, "--seed", 1, "--max-steps", 1)
    a, b = weights(uninterrupted), weights(art)
    assert not torch.equal(a["transformer.wte.weight"], b["transformer.wte.weight"])


@pytest.mark.parametrize("where", ["in the stdlib", "a wider glob that finds stdlib files"])
def test_the_domain_stays_out(setup, where):
    tmp, configs, _ = setup
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    pattern = (
        f"{stdlib}/*.py"
        if where == "in the stdlib"
        else f"{stdlib.parent}/{stdlib.name[:7]}*/json/*.py"
    )
    (configs / "test" / "pretrain.yaml").write_text(
        toy_profile(tmp / "text", sources={"code": [pattern]})
    )
    try:
        proc = pretrain(
            artifacts_with_tokenizer(setup, f"domain-{where.split()[1]}"), configs, check=False
        )
    finally:
        (configs / "test" / "pretrain.yaml").write_text(toy_profile(tmp / "text"))
    assert_one_line_error(proc, "configs/pretrain.yaml", "sources.code", "standard library")


def test_too_little_text_is_a_clear_error(setup):
    _, configs, _ = setup
    proc = pretrain(
        artifacts_with_tokenizer(setup, "little"),
        configs,
        "--min-train-bytes",
        10_000_000,
        check=False,
    )
    assert_one_line_error(proc, "configs/pretrain.yaml", "min_train_bytes", "sources")


def test_the_mini_model_source(tmp_path):
    """07 and 08 load the mini model through 01's record; before 10 has made it, they say how to."""
    from lib.model import model_source
    from lib.paths import Artifacts

    art = Artifacts(tmp_path)
    art.original_tokenizer.mkdir(parents=True)
    art.model_source.write_text(
        json.dumps(
            {
                "model_name": str(art.mini_model),
                "weights": "made by 10_pretrain",
                "smoke_tiny_random_model": False,
                "stand_in": "mini",
                "hub_reachable": False,
            }
        )
    )
    with pytest.raises(SystemExit):
        model_source(art)
    art.mini_model.mkdir(parents=True)
    source = model_source(art)
    assert source.stand_in == "mini" and source.local and not source.smoke
