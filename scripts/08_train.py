"""
08 train: fine-tune GPT-2 with the IVR tokenizer and embeddings on the train split, through accelerate.

    .venv/bin/accelerate launch --config_file configs/accelerate/cpu.yaml scripts/08_train.py [--max-steps N] [--lr X]
    .venv/bin/python scripts/08_train.py [...]                 (the same, one process: for debugging)
    make artifacts/training/summary.json                       (alias: make train)
    make artifacts/training/baseline/summary.json              (alias: make baseline: GPT-2's own tokenizer and
         embeddings, `--run-name baseline --tokenizer-dir .../tokenizers/original --wte model --output-dir .../baseline`)

Loads the model of tokenizers/original/model_source.json (or --model-name), puts embeddings/final_wte.pt in
(lm_head stays tied to it) and tokenizes with tokenizers/remapped/. The train split is packed into blocks of
block_size tokens with <|endoftext|> between documents, in an order that is a function of (seed, step) only.
The budget is in training bytes (max_train_bytes), so runs with different tokenizers see the same data.
Held-out bits per byte (lib/evaluate.py) is measured at step 0, every eval_interval steps and at the end.

Writes to the run directory (--output-dir, default artifacts/training/):
  checkpoints/step_NNNNNNNN/  accelerate save_state every checkpoint_interval steps; a re-run resumes from the last
  metrics.jsonl               step, loss, lr, tokens/s, bytes/s, tokens and bytes seen, eval bits per byte
  sft_checkpoint/             model + tokenizer (save_pretrained; AutoModelForCausalLM / AutoTokenizer load it)
  summary.json                written last, atomically: the Make target
  08_train.config.yaml        the resolved config
Only the main process writes (accelerate's save_state also stores each process's RNG state).
"""

import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import parse_step_args, step_config
from lib.files import first_docs, iter_docs, require, sha256_file
from lib.log import die, log, setup_logging
from lib.model import is_tied, load_gpt2, model_source
from lib.paths import Artifacts
from lib.tokenizer import VOCAB_SIZE, load_gpt2_tokenizer
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

STEP = "08_train"
CONFIG_FILE = "configs/train.yaml"


FLAGS = [  # the step's own flags (the config keys' flags come from lib/schema.py)
    (
        "--tokenizer-dir",
        {"help": "tokenizer to train with (default: <artifacts>/tokenizers/remapped)"},
    ),
    (
        "--wte",
        {
            "help": "embedding matrix [50257, n_embd] saved with torch.save (default: "
            "<artifacts>/embeddings/final_wte.pt), or 'model' to keep the model's own"
        },
    ),
    ("--output-dir", {"help": "run directory (default: <artifacts>/training)"}),
    (
        "--run-name",
        {
            "default": "ivr",
            "help": "label of the run in logs and summary (log: logs/08_train[_NAME].log)",
        },
    ),
    *LOOP_FLAGS,
]


# -----------------------------------------------------------------------------
# inputs


def load_wte(path, n_embd):
    """The embedding matrix of 07 (a [50257, n_embd] tensor saved with torch.save), checked."""
    import torch

    path = require(path, "align")
    try:
        wte = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        die(
            f"{path}: not readable by torch.load ({str(e).splitlines()[0][:120]}); re-run `make align`"
        )
    if not isinstance(wte, torch.Tensor) or wte.ndim != 2:
        die(
            f"{path}: expected a 2-D tensor [{VOCAB_SIZE}, {n_embd}], got {type(wte).__name__}"
            f"{list(wte.shape) if isinstance(wte, torch.Tensor) else ''}; re-run `make align`"
        )
    if tuple(wte.shape) != (VOCAB_SIZE, n_embd):
        die(
            f"{path}: shape {list(wte.shape)} does not match the model ({VOCAB_SIZE:,} rows x n_embd {n_embd}); "
            f"re-run `make align` for this model, or pass --model-name of the model it was made for"
        )
    if not torch.isfinite(wte).all():
        die(f"{path}: has NaN or inf values; re-run `make align`")
    return wte.float()


def load_model(source, wte, attn_implementation="default"):
    """GPT-2 of `source` (lib/model.py: never random weights) in float32, with `wte` put in and lm_head tied to it."""
    import torch

    model = load_gpt2(source, dtype=torch.float32, attn_implementation=attn_implementation)
    if not is_tied(model):
        die(
            f"{source.name}: lm_head is not tied to wte (tie_word_embeddings false); 08 trains GPT-2's tied head only"
        )
    if wte is not None:
        with torch.no_grad():
            model.get_input_embeddings().weight.copy_(wte)
    return model


# -----------------------------------------------------------------------------
# data order and schedule


# -----------------------------------------------------------------------------
# checkpoints and metrics


# -----------------------------------------------------------------------------
# phases


class Data:
    """What the run trains and evaluates on, all checked before any weight is loaded."""

    def __init__(self, art, cfg, args):
        self.source = model_source(
            art, cfg["model_name"]
        )  # before transformers: it may set HF_HUB_OFFLINE
        self.model_name, self.smoke = self.source.name, self.source.smoke
        self.model_config = gpt2_config(self.model_name, cfg)
        self.tokenizer_dir = (
            Path(args.tokenizer_dir) if args.tokenizer_dir else art.remapped_tokenizer
        )
        self.tokenizer = load_gpt2_tokenizer(self.tokenizer_dir)
        self.wte_path = (
            None
            if args.wte == "model"
            else Path(args.wte)
            if args.wte
            else art.embeddings / "final_wte.pt"
        )
        self.wte = load_wte(self.wte_path, self.model_config.n_embd) if self.wte_path else None
        self.train_texts, self.train_bytes = first_docs(iter_docs(art.train_docs), 0)
        self.eval_texts, self.eval_bytes = first_docs(
            iter_docs(art.heldout_docs), cfg["eval_max_bytes"]
        )
        self.blocks, self.train_tokens, self.n_eval_tokens = tokenized(
            self.tokenizer,
            self.train_texts,
            self.eval_texts,
            self.eval_bytes,
            cfg,
            art.train_docs,
            art.heldout_docs,
            "raise heldout_ratio in configs/corpus.yaml",
        )
        what = "the smoke profile's TINY RANDOM GPT-2" if self.smoke else f"model {self.model_name}"
        self.describe = f"{what}; tokenizer {self.tokenizer_dir}; embeddings {self.wte_path or 'the model itself'}"
        self.fingerprint_inputs = {
            "tokenizer_sha256": sha256_file(self.tokenizer_dir / "tokenizer.json"),
            "wte_sha256": sha256_file(self.wte_path) if self.wte_path else "model",
            "train_sha256": sha256_file(art.train_docs),
            "heldout_sha256": sha256_file(art.heldout_docs),
        }


def gpt2_config(model_name, cfg):
    """The model's config; dies unless it is a GPT-2 with 50,257 ids whose n_positions holds block_size."""
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model_config = AutoConfig.from_pretrained(model_name)
    except Exception as e:
        die(
            f"{model_name}: no model config ({str(e).splitlines()[0][:160]}); check --model-name / model_source.json"
        )
    if getattr(model_config, "model_type", None) != "gpt2" or model_config.vocab_size != VOCAB_SIZE:
        die(
            f"{model_name}: a {getattr(model_config, 'model_type', '?')} model with vocab_size "
            f"{getattr(model_config, 'vocab_size', '?')}; 08 needs a GPT-2 with {VOCAB_SIZE:,} ids"
        )
    if cfg["block_size"] > model_config.n_positions:
        die(
            f"configs/train.yaml: block_size {cfg['block_size']:,} is larger than the model's n_positions "
            f"{model_config.n_positions:,}; set block_size (or --block-size) to at most {model_config.n_positions:,}"
        )
    return model_config


def main():
    # 1. config and logging (only the main process of the launchers' global rank logs)
    args = parse_step_args("train", __doc__, FLAGS)
    art = Artifacts(args.artifacts)
    cfg = step_config("train", args)
    log_name = STEP if args.run_name == "ivr" else f"{STEP}_{args.run_name}"
    if int(os.environ.get("RANK", "0")) == 0:
        setup_logging(log_name, art.log_file(log_name))
    else:
        log.handlers[:] = [logging.NullHandler()]  # die() still exits the other processes, quietly
    out_dir = Path(args.output_dir) if args.output_dir else art.training

    # 2. inputs, all checked before any weight is loaded; then accelerate and the step budget
    run = Run(args=args, cfg=cfg, ckpt_dir=out_dir / "checkpoints", config_file=CONFIG_FILE)
    run.data = Data(art, cfg, args)
    if run.data.smoke:
        log.warning(
            "*** SMOKE PROFILE: a TINY RANDOM GPT-2, NOT GPT-2; its figures only show that the machinery works. ***"
        )
    run.accelerator, run.precision = make_accelerator(cfg, CONFIG_FILE)
    run.plan = plan_steps(cfg, run.data, run.accelerator.num_processes)
    log_plan(run.data, run.plan, run.accelerator, run.precision, cfg)

    # 3. model, optimizer, schedule (prepared), and the checkpoint to resume from
    model = load_model(run.data.source, run.data.wte, cfg["attn_implementation"])
    run.model, run.optimizer, run.scheduler, run.phase1 = build_model(
        model, cfg, run.plan["steps"], run.accelerator
    )
    run.fp = fingerprint(
        cfg,
        model_name=run.data.model_name,
        max_steps=run.plan["steps"],
        processes=run.accelerator.num_processes,
        **run.data.fingerprint_inputs,
    )
    run.state = resume(run.accelerator, run.ckpt_dir, run.fp, args.fresh, run.plan["steps"])
    run.metrics = Metrics(out_dir / "metrics.jsonl", run.state["step"], run.accelerator)

    # 4. train, then save the model and the summary (main process)
    train(run)
    model_dir = out_dir / "sft_checkpoint"
    final, peak_mb, peak_kind = save_model(run, model_dir)
    if run.accelerator.is_main_process:
        head = {
            "run": args.run_name,
            "model_name": run.data.model_name,
            "smoke_tiny_random_model": run.data.smoke,
            "stand_in": run.data.source.stand_in,
            "tokenizer": str(run.data.tokenizer_dir),
            "embeddings": str(run.data.wte_path) if run.data.wte_path else "model",
            "sft_checkpoint": str(model_dir),
        }
        write_summary(run, out_dir, model_dir, final, peak_mb, peak_kind, head, STEP)
    run.accelerator.wait_for_everyone()
    run.accelerator.end_training()


if __name__ == "__main__":
    main()
