"""Shared fixtures: run scripts and make as a user would, a tiny random GPT-2, a small raw corpus."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Never wait on the hub in tests: 01's probe and huggingface_hub both honour this.
os.environ["HF_HUB_OFFLINE"] = "1"


def run_script(script, *args, check=True):
    """Run scripts/<script> with this interpreter; return the CompletedProcess (stdout + stderr as text)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def run_make(*args, check=True):
    proc = subprocess.run(
        ["make", "--no-print-directory", *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"make {' '.join(map(str, args))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    """A tiny randomly initialised GPT-2 at full vocab size, saved with save_pretrained (no tokenizer files)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-gpt2")
    config = GPT2Config(vocab_size=50257, n_layer=1, n_head=2, n_embd=32, n_positions=64)
    GPT2LMHeadModel(config).save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def distilled(tmp_path_factory, gpt2_bpe):
    """(artifacts, configs) after 04 ran on the distillation tests' tiny corpus and quick profile
    (tests/distill_fixture.py): read by test_distill.py, test_certify_step.py and test_agreement.py."""
    from distill_fixture import make_inputs, quick_configs

    root = tmp_path_factory.mktemp("distill")
    art = root / "art"
    make_inputs(art, gpt2_bpe)
    configs = quick_configs(root)
    run_script("04_distill.py", "--artifacts", art, "--configs", configs, "--profile", "quick")
    return art, configs


@pytest.fixture(scope="session")
def gpt2_bpe():
    """GPT-2's byte-level BPE (tokenizers), built from the packaged encoder.json / vocab.bpe."""
    from lib.tokenizer import build_gpt2_bpe, gpt2_packaged_files

    return build_gpt2_bpe(*gpt2_packaged_files())


SAMPLE_DOCS = [
    "def add(a, b):\n    return a + b\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "# A heading\n\nSome prose, with punctuation; and numbers 12345.\n",
    "import os\nimport sys\n\nif __name__ == '__main__':\n    print(sys.argv)\n",
    "안녕하세요 세계! 你好，世界。 emoji: 😀🎉\n",
    "for i in range(10):\n\tif i % 2:\n\t\tcontinue\n",
    "    indented    text\twith\ttabs   and   spaces\n\n\n",
    "x = [1, 2, 3]\ny = {'a': 1}\n# ======= separator =======\n",
]


def write_raw_corpus(raw):
    """A small raw corpus in every supported format (two documents duplicated, one empty)."""
    raw.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(SAMPLE_DOCS[:4]):
        (raw / f"doc{i}.txt").write_text(doc, encoding="utf-8")
    (raw / "notes.md").write_text(SAMPLE_DOCS[4], encoding="utf-8")
    with open(raw / "more.jsonl", "w", encoding="utf-8") as f:
        for doc in SAMPLE_DOCS[5:] + [SAMPLE_DOCS[0], ""]:
            f.write(json.dumps({"text": doc}) + "\n")
    extra = [f"def f{i}(x):\n    return x * {i}\n" for i in range(40)]
    import pandas as pd

    pd.DataFrame({"text": extra}).to_parquet(raw / "extra.parquet")
    return raw


@pytest.fixture
def raw_corpus(tmp_path):
    return write_raw_corpus(tmp_path / "raw")


@pytest.fixture
def configs_copy(tmp_path):
    """A private copy of configs/, so a test may edit it."""
    dst = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", dst)
    return dst
