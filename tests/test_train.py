"""08 train and 09 report: bits-per-byte arithmetic, resume after kill -9, the saved checkpoint, bad input.

The runs use the tiny GPT-2 of conftest (1 layer, n_embd 32, n_positions 64, full vocab) for a handful of
steps on a few stdlib modules, as subprocesses, the way Make runs them.
"""

import json
import math
import shutil
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_script

TRAIN_MODULES = ("textwrap.py", "shlex.py", "heapq.py", "bisect.py", "colorsys.py")
HELDOUT_MODULES = ("fnmatch.py",)
TEST_PROFILE = """\
max_train_bytes: 0
max_steps: 6
block_size: 16
per_device_batch_size: 2
grad_accum_steps: 2
lr: 1.0e-3
warmup_fraction: 0.2
eval_interval: 2
eval_max_bytes: 3000
eval_batch_size: 64
checkpoint_interval: 2
keep_checkpoints: 2
log_interval: 1
"""


# -----------------------------------------------------------------------------
# fixtures: an artifacts tree as 01-07 would leave it (06/07 faked: remapped = original, final_wte = wte)


def write_docs(path, names):
    root = Path(sysconfig.get_paths()["stdlib"])
    with open(path, "w", encoding="utf-8") as f:
        for name in names:
            f.write(
                json.dumps(
                    {"id": name, "source": name, "text": (root / name).read_text(encoding="utf-8")}
                )
                + "\n"
            )


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, tiny_gpt2_dir, gpt2_bpe):
    from transformers import AutoModelForCausalLM

    from lib.tokenizer import save_hf_tokenizer

    tmp = tmp_path_factory.mktemp("train")
    art, configs = tmp / "artifacts", tmp / "configs"
    shutil.copytree(ROOT / "configs", configs)
    (configs / "test").mkdir()
    (configs / "test" / "train.yaml").write_text(TEST_PROFILE)
    original = art / "tokenizers" / "original"
    save_hf_tokenizer(gpt2_bpe, original)
    (original / "model_source.json").write_text(
        json.dumps(
            {
                "model_name": str(tiny_gpt2_dir),
                "weights": "present",
                "smoke_tiny_random_model": True,
                "hub_reachable": False,
            }
        )
    )
    shutil.copytree(original, art / "tokenizers" / "remapped")
    (art / "embeddings").mkdir(parents=True)
    wte = (
        AutoModelForCausalLM.from_pretrained(str(tiny_gpt2_dir))
        .transformer.wte.weight.detach()
        .clone()
    )
    torch.save(wte, art / "embeddings" / "final_wte.pt")
    (art / "corpora" / "cleaned").mkdir(parents=True)
    write_docs(art / "corpora" / "cleaned" / "train.jsonl", TRAIN_MODULES)
    write_docs(art / "corpora" / "cleaned" / "heldout.jsonl", HELDOUT_MODULES)
    return art, configs


def train(art, configs, *args, check=True):
    return run_script(
        "08_train.py",
        "--artifacts",
        art,
        "--profile",
        "test",
        "--configs",
        configs,
        *args,
        check=check,
    )


def weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "sft_checkpoint" / "model.safetensors"))


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(artifacts):
    art, configs = artifacts
    train(art, configs)
    return art / "training"


# -----------------------------------------------------------------------------
# bits per byte


class FixedModel(torch.nn.Module):
    """p(token 'ab') = 1/2 at every position; the other V - 1 ids share the rest equally."""

    def __init__(self, favourite, vocab=50257):
        super().__init__()
        self.favourite, self.vocab = favourite, vocab

    def forward(self, input_ids):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.favourite] = math.log(self.vocab - 1)  # e^l = V - 1: half of the mass
        return type("Out", (), {"logits": logits})


def test_bits_per_byte_hand_computed(gpt2_bpe):
    from lib.evaluate import bits_per_byte

    ab, c = gpt2_bpe.encode("ab").ids, gpt2_bpe.encode("c").ids
    assert len(ab) == 1 and len(c) == 1  # "ab" and "c" are one GPT-2 token each
    model = FixedModel(ab[0])
    # Packed: <eot> ab <eot> c. Targets: ab (p = 1/2: 1 bit) and c (p = 1/(2(V-1)): 1 + log2(V-1) bits);
    # the <eot> between them is context, never a target. Bytes: 2 + 1.
    expected_bits = 1 + (1 + math.log2(50257 - 1))
    for block_size, batch_size in ((1, 1), (2, 8), (3, 1), (64, 2)):
        result = bits_per_byte(model, gpt2_bpe, ["ab", "c"], block_size, batch_size)
        assert result["tokens"] == 2 and result["bytes"] == 3
        # float32 logsumexp over 50,257 logits is good to ~1e-5; a miscounted target or byte is off by > 5%
        assert result["bits"] == pytest.approx(expected_bits, rel=1e-4)
        assert result["bits_per_byte"] == pytest.approx(expected_bits / 3, rel=1e-4)
        assert result["tokens_per_byte"] == pytest.approx(2 / 3)


def test_bits_per_byte_scores_each_token_once_and_shards_add_up(gpt2_bpe, tiny_gpt2_dir):
    from transformers import AutoModelForCausalLM

    from lib.evaluate import bits_per_byte

    model = AutoModelForCausalLM.from_pretrained(str(tiny_gpt2_dir))
    model.train()
    texts = ["def f(x):\n    return x\n", "héllo wörld 😀", "a" * 50, "\n\n\n    pass\n"]
    n_text_tokens = sum(len(gpt2_bpe.encode(t).ids) for t in texts)
    whole = bits_per_byte(model, gpt2_bpe, texts, block_size=7, batch_size=3)
    assert whole["tokens"] == n_text_tokens and whole["bytes"] == sum(
        len(t.encode()) for t in texts
    )
    assert model.training  # the train/eval mode is restored
    shards = [bits_per_byte(model, gpt2_bpe, texts, 7, 3, rank=r, world_size=3) for r in range(3)]
    assert sum(s["tokens"] for s in shards) == whole["tokens"]
    assert sum(s["bits"] for s in shards) == pytest.approx(
        whole["bits"], rel=1e-5
    )  # float32, other batch shapes
    reduced = bits_per_byte(
        model, gpt2_bpe, texts, 7, 3, reduce=lambda t: t * 1
    )  # a one-process "reduce"
    assert (
        reduced["bits"] == pytest.approx(whole["bits"], rel=1e-6)
        and reduced["tokens"] == whole["tokens"]
    )


# -----------------------------------------------------------------------------
# training: resume, outputs


def test_resume_after_kill_continues_exactly(artifacts, uninterrupted):
    art, configs = artifacts
    run = art / "training" / "killed"
    killed = train(art, configs, "--output-dir", run, "--debug-kill-after-step", 5, check=False)
    assert killed.returncode == -9  # SIGKILL after step 5; the last checkpoint is step 4
    assert sorted(
        d.name for d in (run / "checkpoints").iterdir() if not d.name.endswith(".partial")
    ) == ["step_00000002", "step_00000004"]
    assert not (run / "summary.json").exists()
    resumed = train(art, configs, "--output-dir", run)
    assert f"resuming from {run / 'checkpoints' / 'step_00000004'} (step 4 of 6)" in resumed.stderr
    assert json.loads((run / "summary.json").read_text())["resumed_from_steps"] == [4]
    rows, reference = metrics(run), metrics(uninterrupted)
    assert [r["step"] for r in rows] == list(
        range(7)
    )  # step 5 of the killed run was redone, not duplicated
    assert [r.get("loss") for r in rows] == [r.get("loss") for r in reference]
    assert [r.get("eval_bits_per_byte") for r in rows] == [
        r.get("eval_bits_per_byte") for r in reference
    ]
    a, b = weights(uninterrupted), weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_rerun_after_finish_resumes_at_the_end(artifacts, uninterrupted):
    art, configs = artifacts
    summary = json.loads((uninterrupted / "summary.json").read_text())
    (uninterrupted / "summary.json").unlink()  # as if killed while writing the outputs
    proc = train(art, configs)
    assert "(step 6 of 6)" in proc.stderr
    again = json.loads((uninterrupted / "summary.json").read_text())
    assert again["heldout"] == summary["heldout"] and again["resumed_from_steps"] == [6]


def test_outputs(uninterrupted):
    summary = json.loads((uninterrupted / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["tokens_per_step"] == 2 * 2 * 16
    assert summary["bytes_seen"] == round(6 * summary["bytes_per_step"])
    assert summary["heldout"]["bits_per_byte"] < summary["heldout"]["initial_bits_per_byte"]
    rows = metrics(uninterrupted)
    for key in ("loss", "lr", "tokens_per_s", "bytes_per_s"):
        assert all(key in r for r in rows[1:])
    assert [r["step"] for r in rows if "eval_bits_per_byte" in r] == [0, 2, 4, 6]
    assert (uninterrupted / "08_train.config.yaml").exists()
    assert sorted(d.name for d in (uninterrupted / "checkpoints").iterdir()) == [
        "step_00000004",
        "step_00000006",
    ]


def test_checkpoint_has_final_wte_and_tied_head(artifacts, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    art, configs = artifacts
    torch.manual_seed(1)
    wte = torch.randn(50257, 32) * 0.02
    torch.save(wte, tmp_path / "wte.pt")
    run = tmp_path / "run"
    train(
        art, configs, "--wte", tmp_path / "wte.pt", "--output-dir", run, "--lr", 0, "--max-steps", 2
    )
    model = AutoModelForCausalLM.from_pretrained(str(run / "sft_checkpoint"))
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    assert torch.equal(model.transformer.wte.weight.detach(), wte)  # lr 0: exactly what was put in
    tokenizer = AutoTokenizer.from_pretrained(str(run / "sft_checkpoint"))
    assert len(tokenizer) == 50257 and tokenizer.eos_token_id == 50256
    assert (
        tokenizer("def f(x):\n    return x")["input_ids"]
        == AutoTokenizer.from_pretrained(str(art / "tokenizers" / "remapped"))(
            "def f(x):\n    return x"
        )["input_ids"]
    )
    generate = pipeline(
        "text-generation", model=str(run / "sft_checkpoint")
    )  # the README's example
    assert generate("def main():\n", max_new_tokens=5, do_sample=False)[0][
        "generated_text"
    ].startswith("def main():\n")


def test_accelerate_launch_cpu_config(artifacts, tmp_path):
    art, configs = artifacts
    accelerate = Path(sys.executable).with_name("accelerate")
    proc = subprocess.run(
        [
            str(accelerate),
            "launch",
            "--quiet",
            "--config_file",
            str(ROOT / "configs/accelerate/cpu.yaml"),
            str(ROOT / "scripts/08_train.py"),
            "--artifacts",
            str(art),
            "--profile",
            "test",
            "--configs",
            str(configs),
            "--output-dir",
            str(tmp_path / "run"),
            "--max-steps",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 1


# -----------------------------------------------------------------------------
# bad input: one line, naming the file or key and the fix, no traceback


def assert_clean_error(proc, *phrases):
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for phrase in phrases:
        assert phrase in last, last


def test_missing_final_wte(artifacts, tmp_path):
    art, configs = artifacts
    proc = train(
        art,
        configs,
        "--wte",
        tmp_path / "final_wte.pt",
        "--output-dir",
        tmp_path / "run",
        check=False,
    )
    assert_clean_error(proc, "final_wte.pt is missing", "make align")


def test_final_wte_with_wrong_row_count(artifacts, tmp_path):
    art, configs = artifacts
    torch.save(torch.zeros(50000, 32), tmp_path / "wte.pt")
    proc = train(
        art, configs, "--wte", tmp_path / "wte.pt", "--output-dir", tmp_path / "run", check=False
    )
    assert_clean_error(proc, "shape [50000, 32]", "50,257 rows")


def test_block_size_beyond_n_positions(artifacts, tmp_path):
    art, configs = artifacts
    proc = train(art, configs, "--block-size", 65, "--output-dir", tmp_path / "run", check=False)
    assert_clean_error(proc, "block_size 65", "n_positions 64")


def test_heldout_too_small(artifacts, tmp_path):
    art, configs = artifacts
    small = tmp_path / "artifacts"
    shutil.copytree(art, small, ignore=shutil.ignore_patterns("training"))
    (small / "corpora" / "cleaned" / "heldout.jsonl").write_text(
        json.dumps({"id": "x", "source": "x", "text": "x = 1\n"}) + "\n"
    )
    proc = train(small, configs, check=False)
    assert_clean_error(proc, "heldout.jsonl", "too small to evaluate")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(artifacts, tmp_path):
    art, configs = artifacts
    run = tmp_path / "run"
    proc = train(art, configs, "--output-dir", run, "--debug-nan-at-step", 3, check=False)
    assert_clean_error(proc, "loss is nan at step 3", "step_00000002, is kept")
    assert sorted(d.name for d in (run / "checkpoints").iterdir()) == ["step_00000002"]
    assert not (run / "summary.json").exists() and not (run / "sft_checkpoint").exists()


def test_without_a_sync_every_step_a_nan_stops_at_the_next_log_row(artifacts, tmp_path):
    """sync_every_step false (the GPU setting: no host-device sync per step): the loss is read at the log rows,
    so a NaN from step 3 stops the run there, with the steps named, and nothing finished is written."""
    art, configs = artifacts
    run = tmp_path / "run"
    proc = train(
        art,
        configs,
        "--output-dir",
        run,
        "--no-sync-every-step",
        "--log-interval",
        2,
        "--debug-nan-at-step",
        3,
        check=False,
    )
    assert_clean_error(proc, "loss is nan in steps 3-4", "step_00000002, is kept")
    assert not (run / "summary.json").exists() and not (run / "sft_checkpoint").exists()


def test_summary_reports_the_speed_settings(uninterrupted):
    summary = json.loads((uninterrupted / "summary.json").read_text())
    assert summary["attn_implementation"] in ("eager", "sdpa") and summary["compile"] is False
    assert (
        summary["flops_per_token"] > 0 and summary["mfu"] is None
    )  # no GPU here: no peak to divide by


# -----------------------------------------------------------------------------
# 09 report


def test_report(artifacts, uninterrupted):
    art, configs = artifacts
    train(
        art,
        configs,
        "--run-name",
        "baseline",
        "--tokenizer-dir",
        art / "tokenizers" / "original",
        "--wte",
        "model",
        "--output-dir",
        art / "training" / "baseline",
    )
    run_script("09_report.py", "--artifacts", art, "--profile", "test", "--configs", configs)
    reports = art / "analysis" / "reports"
    text = (reports / "ivr_report.md").read_text()
    assert "SMOKE RUN" in text and "ivr_bits_per_byte.png" in text
    for row in ("unchanged", "fine-tuned without IVR", "+ IVR fine-tuned"):
        assert f"tiny random GPT-2 {row}" in text
    png = (reports / "ivr_bits_per_byte.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24])[0] > 100
    table = json.loads((reports / "ivr_report.json").read_text())["rows"]
    base = json.loads((art / "training" / "baseline" / "summary.json").read_text())
    assert table[0]["bits_per_byte"] == base["heldout"]["initial_bits_per_byte"]
    assert table[1]["bits_per_byte"] == base["heldout"]["bits_per_byte"]
    # 06/07 are faked here (remapped = original, final_wte = wte): both runs are the same run
    assert table[2]["bits_per_byte"] == table[1]["bits_per_byte"]
    # equal compute: the baseline's last evaluation at or before the IVR run's steps (here the same run)
    equal = [r for r in table if "(equal compute)" in r["model"]]
    assert len(equal) == 1 and 0 < equal[0]["steps"] <= table[2]["steps"]
    assert "At equal compute (the same steps" in text
