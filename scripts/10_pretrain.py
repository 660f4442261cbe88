"""
10 pretrain: the mini profile's stand-in for GPT-2: a small GPT-2 with GPT-2's 50,257 ids and BPE, trained
from scratch on general text that is not the domain, by the same accelerate loop as 08 (lib/train.py).

    .venv/bin/accelerate launch --config_file configs/accelerate/cpu.yaml scripts/10_pretrain.py --profile mini
    .venv/bin/python scripts/10_pretrain.py --profile mini [--max-train-bytes N] [--n-embd D]   (one process)
    make artifacts/models/mini-gpt2/model.safetensors PROFILE=mini   (alias: make pretrain; make report PROFILE=mini runs it)

Numbered 10 because 01-09 are the seed's steps; in the DAG it runs after 01 (GPT-2's tokenizer) and before
07 and 08, whose model it is in the mini profile. Reads configs/pretrain.yaml: the shape, the budget and
`sources`, files every machine has offline (licences, docs, man pages, C headers, JavaScript, translation
catalogues) and never the Python standard library, the default domain. Writes:
  corpora/general/train.jsonl, heldout.jsonl, manifest.json   the text (split by a hash of each document) and
                                every file read, with its sha256
  models/mini-gpt2/             model + tokenizer (save_pretrained): the model_name 01 records for the mini profile
  training/pretrain/            checkpoints/ (a re-run resumes), metrics.jsonl, loss_curve.png, summary.json (last),
                                10_pretrain.config.yaml
It is NOT GPT-2: a stand-in that has learned GPT-2's tokens from general text, so that what IVR costs a model
that knows its tokens can be measured offline. Deterministic for a seed: the init, the split and the data order.
With a GPU, gpu_overrides (a larger shape, a larger budget) apply to the same target.
"""

import hashlib
import json
import logging
import os
import sys
import sysconfig
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import check_config, parse_step_args, step_config
from lib.files import atomic_path, first_docs, in_heldout, sha256_file, write_json
from lib.log import die, log, setup_logging
from lib.oodtext import expand, ood_documents
from lib.paths import Artifacts
from lib.tokenizer import EOT_ID, VOCAB_SIZE, load_gpt2_tokenizer
from lib.train import (
    LOOP_FLAGS,
    Metrics,
    Run,
    build_model,
    fingerprint,
    log_plan,
    make_accelerator,
    plan_steps,
    resume,
    save_model,
    tokenized,
    train,
    write_summary,
)

STEP = "10_pretrain"
CONFIG_FILE = "configs/pretrain.yaml"
FLAGS = [
    ("--run-name", {"default": "pretrain", "help": "label of the run in logs and summary"}),
    *LOOP_FLAGS,
]


# -----------------------------------------------------------------------------
# the general text


STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"])


def in_stdlib(path, stdlib=STDLIB):
    real = os.path.realpath(path)
    return real == stdlib or real.startswith(stdlib + os.sep)


def check_not_domain(sources, found=None):
    """Dies when a pattern, or a file it found (found: ood_documents' result), lies in the Python standard
    library: the default domain stays out of the general text, or IVR's comparison would start from a model
    that already saw the domain."""
    for kind, patterns in sources.items():
        bad = [
            p
            for p in patterns
            if "{stdlib}" in p or in_stdlib(expand(p).split("*")[0].split("[")[0] or "/")
        ]
        bad += [
            path for path, _ in (found or {}).get(kind, {}).get("files", []) if in_stdlib(path)
        ][:1]
        if bad:
            die(
                f"{CONFIG_FILE}: sources.{kind}: '{bad[0]}' lies in the Python standard library, the default "
                f"domain; the general text must not hold the domain"
            )


def general_text(cfg):
    """(train texts, held-out texts, manifest): every source type up to max_bytes_per_source, its files at an
    even stride over the sorted tree, each file one document (duplicates and non-UTF-8 files left out)."""
    check_not_domain(cfg["sources"])
    found = ood_documents(cfg["sources"], cfg["max_bytes_per_source"], even=True)
    check_not_domain(cfg["sources"], found)
    split, files, kinds = {"train": [], "heldout": []}, [], {}
    for kind, got in found.items():
        for (path, n_bytes), text in zip(got["files"], got["docs"]):
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            side = "heldout" if in_heldout(digest, cfg["seed"], cfg["heldout_ratio"]) else "train"
            split[side].append(text)
            files.append(
                {
                    "type": kind,
                    "path": path,
                    "bytes": n_bytes,
                    "sha256": sha256_file(path),
                    "split": side,
                }
            )
        kinds[kind] = {
            "patterns": got["patterns"],
            "files": len(got["files"]),
            "bytes": sum(n for _, n in got["files"]),
            "note": got["note"],
        }
        log.info(
            f"  {kind:14s} {len(got['files']):6,} files {kinds[kind]['bytes']:12,} bytes  {got['note']}"
        )
    train_bytes = sum(len(t.encode("utf-8")) for t in split["train"])
    if train_bytes < cfg["min_train_bytes"] or not split["heldout"]:
        die(
            f"{CONFIG_FILE}: sources found {train_bytes:,} bytes of general train text and {len(split['heldout'])} "
            f"held-out documents on this machine (min_train_bytes {cfg['min_train_bytes']:,}); add globs of text files "
            f"that are here to sources"
        )
    manifest = {
        "what": "general text of 10_pretrain, not the domain",
        "types": kinds,
        "files": files,
        "split": {
            "heldout_ratio": cfg["heldout_ratio"],
            "seed": cfg["seed"],
            "by": "sha256 of document text",
        },
        "totals": {
            side: {"documents": len(t), "bytes": sum(len(x.encode("utf-8")) for x in t)}
            for side, t in split.items()
        },
    }
    return split["train"], split["heldout"], manifest


def write_general(out_dir, train_texts, heldout_texts, manifest):
    """corpora/general/: the split as 02 writes one ({"id", "source", "text"} per line) and the manifest."""
    for name, texts in (("train", train_texts), ("heldout", heldout_texts)):
        with atomic_path(out_dir / f"{name}.jsonl") as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                for text in texts:
                    f.write(
                        json.dumps(
                            {
                                "id": hashlib.sha256(text.encode()).hexdigest()[:16],
                                "source": "general",
                                "text": text,
                            },
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
    write_json(out_dir / "manifest.json", manifest)


# -----------------------------------------------------------------------------
# the data and the model


class Data:
    """The run's data, for lib/train.py: GPT-2's BPE over the general text."""

    def __init__(self, art, cfg, train_texts, heldout_texts):
        self.tokenizer_dir = art.original_tokenizer
        self.tokenizer = load_gpt2_tokenizer(self.tokenizer_dir, expect_model="BPE")
        self.train_texts, self.train_bytes = (
            train_texts,
            sum(len(t.encode("utf-8")) for t in train_texts),
        )
        self.eval_texts, self.eval_bytes = first_docs(heldout_texts, cfg["eval_max_bytes"])
        self.blocks, self.train_tokens, self.n_eval_tokens = tokenized(
            self.tokenizer,
            self.train_texts,
            self.eval_texts,
            self.eval_bytes,
            cfg,
            "the general train text",
            "the general held-out text",
            f"raise heldout_ratio in {CONFIG_FILE}",
        )
        self.describe = (
            f"from scratch: GPT-2 {cfg['n_layer']} layers x {cfg['n_embd']} wide, {cfg['n_head']} heads, "
            f"n_positions {cfg['n_positions']}; tokenizer {self.tokenizer_dir} (GPT-2's BPE)"
        )
        self.fingerprint_inputs = {
            "tokenizer_sha256": sha256_file(self.tokenizer_dir / "tokenizer.json"),
            "train_sha256": hashlib.sha256("\0".join(train_texts).encode()).hexdigest(),
            "heldout_sha256": hashlib.sha256("\0".join(heldout_texts).encode()).hexdigest(),
        }


def with_gpu_overrides(cfg):
    """cfg with gpu_overrides applied when the run will be on a GPU (checked by the same schema)."""
    import torch
    from accelerate.utils import parse_flag_from_env

    if (
        not cfg["gpu_overrides"]
        or not torch.cuda.is_available()
        or parse_flag_from_env("ACCELERATE_USE_CPU")
    ):
        return cfg
    log.info(f"GPU: applying gpu_overrides {cfg['gpu_overrides']}")
    return check_config(
        "pretrain", {**cfg, **cfg["gpu_overrides"]}, f"{CONFIG_FILE}: gpu_overrides"
    )


def fresh_model(cfg):
    """A GPT-2 of the configured shape, initialised by transformers from the seed: the start of pretraining
    (the one place in the kit where weights are random by design)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    # no dropout: one pass over a few MB, where dropout only slows learning (as nanoGPT pretrains); the saved
    # config keeps it at 0, so 08's fine-tunes of the mini run without dropout too
    config = GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_layer=cfg["n_layer"],
        n_head=cfg["n_head"],
        n_embd=cfg["n_embd"],
        n_positions=cfg["n_positions"],
        bos_token_id=EOT_ID,
        eos_token_id=EOT_ID,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    if cfg["attn_implementation"] != "default":
        config._attn_implementation = cfg["attn_implementation"]
    with torch.random.fork_rng():
        torch.manual_seed(cfg["seed"])
        model = GPT2LMHeadModel(config)
    log.info(
        f"initialised {sum(p.numel() for p in model.parameters()):,} parameters from seed {cfg['seed']}"
    )
    return model


# -----------------------------------------------------------------------------
# the end: the loss curve


def plot_loss_curve(rows, path):
    """loss_curve.png: training loss and held-out bits per byte against training bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train_rows = [r for r in rows if "loss" in r]
    ax.plot(
        [r["bytes_seen"] / 1e6 for r in train_rows],
        [r["loss"] for r in train_rows],
        label="train loss (nats/token)",
    )
    eval_rows = [r for r in rows if "eval_bits_per_byte" in r]
    ax.plot(
        [r["bytes_seen"] / 1e6 for r in eval_rows],
        [r["eval_bits_per_byte"] for r in eval_rows],
        "o-",
        label="held-out bits/byte (general text)",
    )
    ax.set_xlabel("training MB")
    ax.set_title("10 pretrain: the mini stand-in (NOT GPT-2)")
    ax.legend()
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def main():
    # 1. config and logging (only the main process logs)
    args = parse_step_args("pretrain", __doc__, FLAGS)
    art = Artifacts(args.artifacts)
    cfg = with_gpu_overrides(step_config("pretrain", args))
    if int(os.environ.get("RANK", "0")) == 0:
        setup_logging(STEP, art.log_file(STEP))
    else:
        log.handlers[:] = [logging.NullHandler()]
    out_dir = art.pretrain_run
    log.warning(
        "*** 10 PRETRAIN: a small GPT-2 trained from scratch on general text, the mini profile's stand-in. NOT GPT-2. ***"
    )

    # 2. the general text (every process reads the same; the main one writes it), then accelerate and the budget
    train_texts, heldout_texts, manifest = general_text(cfg)
    run = Run(args=args, cfg=cfg, ckpt_dir=out_dir / "checkpoints", config_file=CONFIG_FILE)
    run.data = Data(art, cfg, train_texts, heldout_texts)
    run.accelerator, run.precision = make_accelerator(cfg, CONFIG_FILE)
    if run.accelerator.is_main_process:
        write_general(art.general_corpus, train_texts, heldout_texts, manifest)
    run.plan = plan_steps(cfg, run.data, run.accelerator.num_processes)
    log_plan(run.data, run.plan, run.accelerator, run.precision, cfg)

    # 3. the model from the seed, optimizer, schedule (prepared), and the checkpoint to resume from
    model = fresh_model(cfg)
    run.data.model_config = model.config  # save_model writes the tokenizer with its n_positions
    run.model, run.optimizer, run.scheduler, run.phase1 = build_model(
        model, cfg, run.plan["steps"], run.accelerator
    )
    run.fp = fingerprint(
        cfg,
        max_steps=run.plan["steps"],
        processes=run.accelerator.num_processes,
        **run.data.fingerprint_inputs,
    )
    run.state = resume(run.accelerator, run.ckpt_dir, run.fp, args.fresh, run.plan["steps"])
    run.metrics = Metrics(out_dir / "metrics.jsonl", run.state["step"], run.accelerator)

    # 4. train, then the model (the Make target), the loss curve and the summary (last)
    train(run)
    final, peak_mb, peak_kind = save_model(run, art.mini_model)
    if run.accelerator.is_main_process:
        plot_loss_curve(run.metrics.rows, out_dir / "loss_curve.png")
        head = {
            "run": args.run_name,
            "stand_in": "mini",
            "what": "NOT GPT-2: a small GPT-2 pretrained from scratch on general text",
            "shape": {k: cfg[k] for k in ("n_layer", "n_head", "n_embd", "n_positions")},
            "parameters": sum(
                p.numel() for p in run.accelerator.unwrap_model(run.model).parameters()
            ),
            "general_text": {
                "manifest": str(art.general_corpus / "manifest.json"),
                **manifest["totals"],
            },
            "model_dir": str(art.mini_model),
        }
        write_summary(run, out_dir, art.mini_model, final, peak_mb, peak_kind, head, STEP)
    run.accelerator.wait_for_everyone()
    run.accelerator.end_training()


if __name__ == "__main__":
    main()
