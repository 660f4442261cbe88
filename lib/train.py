"""The one training loop of 08 train (fine-tuning GPT-2 + IVR, and its baseline) and 10 pretrain (the mini
profile's stand-in GPT-2, from scratch), through accelerate: prepare, backward, reduce, unwrap, save.

    >>> run = Run(args=args, cfg=cfg, ckpt_dir=out_dir / "checkpoints", config_file="configs/train.yaml")
    >>> run.data = MyData(...)        # tokenizer, blocks, eval_texts, train/eval bytes and tokens (see plan_steps)
    >>> run.accelerator, run.precision = make_accelerator(cfg, run.config_file)
    >>> ...                           # plan_steps, build_model, resume, Metrics: as in scripts/08_train.py main()
    >>> train(run); save_model(run, model_dir); write_summary(run, ...)

The data order is a function of (seed, step) only and checkpoints hold every process's RNG, so a killed run
resumes to exactly the weights an uninterrupted one reaches. A script gives the loop its data (an object
with the attributes log_plan reads) and its model; the loop never loads or makes up weights itself.
"""

import argparse
import contextlib
import json
import logging
import math
import os
import resource
import signal
import time

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from lib.config import save_config
from lib.evaluate import bits_per_byte
from lib.files import PARTIAL, atomic_path, write_json
from lib.flops import flops_per_token, peak_flops
from lib.log import die, log
from lib.tokenizer import EOT_ID, save_hf_tokenizer

# Config keys that do not change the trained weights: a re-run with other values still resumes.
NOT_IN_FINGERPRINT = {
    "eval_interval",
    "eval_batch_size",
    "checkpoint_interval",
    "keep_checkpoints",
    "log_interval",
}

LOOP_FLAGS = [  # flags of every script that runs the loop (the config keys' flags come from lib/schema.py)
    (
        "--fresh",
        {
            "action": "store_true",
            "help": "ignore and remove existing checkpoints; start from step 0",
        },
    ),
    # For the tests: die by SIGKILL right after step N (as `kill -9` would), or make the loss NaN at step N.
    ("--debug-kill-after-step", {"type": int, "help": argparse.SUPPRESS}),
    ("--debug-nan-at-step", {"type": int, "help": argparse.SUPPRESS}),
]


class Run:
    """The pieces one training run passes between its phases (set up in the script's main, in order)."""

    def __init__(self, **parts):
        self.__dict__.update(parts)


# -----------------------------------------------------------------------------
# inputs, data order and schedule


def token_stream(tokenizer, texts, batch_docs=256):
    """One int32 array <eot> d1 <eot> d2 ... of the train split."""
    parts = []
    for i in range(0, len(texts), batch_docs):
        for enc in tokenizer.encode_batch_fast(texts[i : i + batch_docs], add_special_tokens=False):
            parts.append(np.array([EOT_ID], dtype=np.int32))
            parts.append(np.asarray(enc.ids, dtype=np.int32))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def tokenized(
    tokenizer, train_texts, eval_texts, eval_bytes, cfg, train_file, eval_file, more_eval
):
    """(Blocks of the packed train stream, its target tokens, held-out tokens), checked to hold one block
    each; more_eval: how the user gets more held-out text (a hint in the error)."""
    from lib.evaluate import pack_documents

    stream = token_stream(tokenizer, train_texts)
    blocks = Blocks(stream, cfg["block_size"], cfg["seed"])
    if blocks.n_blocks < 1:
        die(
            f"{train_file}: {len(stream):,} tokens, fewer than one block of block_size {cfg['block_size']:,} + 1; "
            f"add train documents or lower block_size"
        )
    n_eval_tokens = len(pack_documents(tokenizer, eval_texts)[0])
    if n_eval_tokens < cfg["block_size"] + 1:
        die(
            f"{eval_file}: {n_eval_tokens:,} held-out tokens ({eval_bytes:,} bytes"
            f"{', capped by eval_max_bytes' if cfg['eval_max_bytes'] else ''}), fewer than one block of block_size "
            f"{cfg['block_size']:,} + 1: too small to evaluate; {more_eval}, raise eval_max_bytes, or lower block_size"
        )
    return (
        blocks,
        len(stream) - 1,
        n_eval_tokens,
    )  # the targets of the packed stream (separators included)


class Blocks:
    """Blocks of block_size + 1 tokens (overlapping by one) of the packed train stream, shuffled per epoch.

    The block at global position p is a function of (seed, p) only, and the batch of (step, micro, rank) is a
    function of its positions, so a resumed run sees exactly the data an uninterrupted one would.
    """

    def __init__(self, stream, block_size, seed):
        self.stream, self.block_size, self.seed = stream, block_size, seed
        self.n_blocks = (len(stream) - 1) // block_size
        self._perms = {}

    def _perm(self, epoch):
        if epoch not in self._perms:
            import torch

            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = torch.randperm(self.n_blocks, generator=g).numpy()
        return self._perms[epoch]

    def batch(self, step, micro, rank, world, accum, batch_size):
        import torch

        first = ((step * accum + micro) * world + rank) * batch_size
        rows = []
        for p in range(first, first + batch_size):
            epoch, i = divmod(p, self.n_blocks)
            start = int(self._perm(epoch)[i]) * self.block_size
            rows.append(self.stream[start : start + self.block_size + 1])
        return torch.from_numpy(np.stack(rows).astype(np.int64))


def lr_lambda(total, warmup, schedule, min_ratio, start=0):
    """lr factor of optimizer step k (0-based): 0 before `start`, linear warmup, then the decay to min_ratio."""

    def factor(k):
        if k < start:
            return 0.0
        if k - start < warmup:
            return (k - start + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (k - start - warmup) / max(1, total - start - warmup))
        if schedule == "cosine":
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0 - (1 - min_ratio) * progress

    return factor


def param_groups(model, cfg, total_steps):
    """AdamW groups (no decay on embeddings, biases, LayerNorms) and one lr factor per group."""
    n_layer = model.config.n_layer
    first = ("transformer.wte.", "transformer.wpe.")
    if cfg["first_phase_io_layers"]:
        first += ("transformer.h.0.", f"transformer.h.{n_layer - 1}.", "transformer.ln_f.")
    phased = cfg["train_params"] == "embeddings-first"
    phase1 = round(cfg["first_phase_fraction"] * total_steps) if phased else 0
    warmup = round(cfg["warmup_fraction"] * total_steps)
    groups = {}
    for name, p in model.named_parameters():  # the tied lm_head.weight is wte's, listed once
        in_first = name.startswith(first)
        decay = p.ndim >= 2 and not name.startswith(("transformer.wte.", "transformer.wpe."))
        key = ("first" if in_first else "rest", decay)
        groups.setdefault(
            key,
            {
                "params": [],
                "weight_decay": cfg["weight_decay"] if decay else 0.0,
                "name": f"{key[0]}{'' if decay else '_nodecay'}",
            },
        )
        groups[key]["params"].append(p)
    ordered = [groups[k] for k in sorted(groups)]
    lambdas = [
        lr_lambda(
            total_steps,
            warmup,
            cfg["schedule"],
            cfg["min_lr_ratio"],
            start=0 if g["name"].startswith("first") else phase1,
        )
        for g in ordered
    ]
    return ordered, lambdas, phase1


# -----------------------------------------------------------------------------
# checkpoints and metrics


def checkpoints(ckpt_dir):
    """Finished checkpoints (a trainer_state.json inside, no .partial suffix), oldest first."""
    if not ckpt_dir.is_dir():
        return []
    done = [
        d
        for d in ckpt_dir.iterdir()
        if d.is_dir()
        and d.name.startswith("step_")
        and not d.name.endswith(PARTIAL)
        and (d / "trainer_state.json").exists()
    ]
    return sorted(done, key=lambda d: d.name)


def save_checkpoint(accelerator, ckpt_dir, step, trainer_state, keep):
    """accelerate save_state into step_N.partial on every process; the main process then renames and prunes."""
    import shutil

    final = ckpt_dir / f"step_{step:08d}"
    tmp = final.with_name(final.name + PARTIAL)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(
            json.dumps(trainer_state, indent=2) + "\n", encoding="utf-8"
        )
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in checkpoints(ckpt_dir)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def fingerprint(cfg, **inputs):
    """What a checkpoint must share with this run to be resumed: the config that shapes the weights, and the inputs."""
    return {**{k: v for k, v in sorted(cfg.items()) if k not in NOT_IN_FINGERPRINT}, **inputs}


def read_metrics(path, up_to_step):
    """The rows of metrics.jsonl up to a step (a resumed run redoes the later ones)."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a row cut short by a kill
            if row.get("step", math.inf) <= up_to_step:
                rows.append(row)
    return rows


def peak_memory(device):
    """Peak memory of this process in MB, and what it measures."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(
            device
        ) / 2**20, "GPU memory allocated by torch (main process)"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "CPU peak RSS (main process)"


def finite(x):
    return x is not None and math.isfinite(float(x))


class Metrics:
    """metrics.jsonl: the rows kept from before a resume, and the new ones appended as they come (main process)."""

    def __init__(self, path, start_step, accelerator):
        self.path = path
        self.rows = read_metrics(path, start_step) if start_step else []
        if accelerator.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows), encoding="utf-8")
        accelerator.wait_for_everyone()
        self.file = open(path, "a", encoding="utf-8") if accelerator.is_main_process else None

    def write(self, row):
        self.rows.append(row)
        if self.file:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()

    def close(self):
        if self.file:
            self.file.close()


# -----------------------------------------------------------------------------
# setup: accelerate, the step budget, the prepared model and the checkpoint to resume from


def make_accelerator(cfg, config_file):
    """(Accelerator, precision): auto is bf16 on a GPU that supports it, else fp32; decided before the
    Accelerator exists (its state is created once, with the precision)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import parse_flag_from_env, set_seed

    on_gpu = torch.cuda.is_available() and not parse_flag_from_env("ACCELERATE_USE_CPU")
    precision = cfg["mixed_precision"]
    if precision == "auto":
        precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
    elif precision == "fp16" and not on_gpu:
        die(f"{config_file}: mixed_precision fp16 needs a GPU; use auto, no or bf16 here")
    if (
        cfg["tf32"] and on_gpu
    ):  # fp32 matmuls on tensor cores (10-bit mantissa); bf16 autocast work is unaffected
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    accelerator = Accelerator(mixed_precision=precision, step_scheduler_with_optimizer=False)
    logging.getLogger("accelerate.utils.other").setLevel(
        logging.ERROR
    )  # "Removed shared tensor": the tied lm_head, expected
    set_seed(cfg["seed"])
    return accelerator, precision


def plan_steps(cfg, data, world):
    """{steps, tokens_per_step, bytes_per_step}: the byte budget in optimizer steps (or max_steps)."""
    tokens_per_step = (
        cfg["per_device_batch_size"] * cfg["grad_accum_steps"] * world * cfg["block_size"]
    )
    bytes_per_step = tokens_per_step * data.train_bytes / data.train_tokens
    steps = (
        math.ceil(cfg["max_train_bytes"] / bytes_per_step)
        if cfg["max_train_bytes"]
        else cfg["max_steps"]
    )
    return {"steps": steps, "tokens_per_step": tokens_per_step, "bytes_per_step": bytes_per_step}


def log_plan(data, plan, accelerator, precision, cfg):
    log.info(data.describe)  # the script's line: which model, tokenizer, embeddings
    log.info(
        f"train split: {len(data.train_texts):,} documents, {data.train_bytes:,} bytes, {data.train_tokens:,} tokens "
        f"({data.train_tokens / data.train_bytes:.3f} tokens/byte), {data.blocks.n_blocks:,} blocks of {cfg['block_size']:,}"
    )
    log.info(
        f"held-out eval: {len(data.eval_texts):,} documents, {data.eval_bytes:,} bytes, {data.n_eval_tokens:,} tokens"
    )
    steps, bytes_per_step = plan["steps"], plan["bytes_per_step"]
    log.info(
        f"{accelerator.num_processes} process(es) on {accelerator.device.type}, precision {precision}; "
        f"{plan['tokens_per_step']:,} tokens ({bytes_per_step:,.0f} bytes) per step; {steps:,} steps = "
        f"{steps * bytes_per_step:,.0f} bytes ({steps * bytes_per_step / data.train_bytes:.2f} epochs)"
    )


def build_model(model, cfg, steps, accelerator):
    """(model, optimizer, scheduler, steps of the embeddings-only phase), prepared by accelerate."""
    import torch

    model.train()
    log.info(f"attention: {model.config._attn_implementation}")
    groups, lambdas, phase1 = param_groups(model, cfg, steps)
    if cfg["train_params"] == "embeddings-first":
        if phase1 == 0:
            log.warning(
                f"warning: first_phase_fraction {cfg['first_phase_fraction']} of {steps:,} steps rounds to 0: no embeddings-only phase"
            )
        else:
            log.info(
                f"embeddings-first: steps 1-{phase1:,} train only the embeddings{' and the first/last blocks' if cfg['first_phase_io_layers'] else ''}"
            )
    fused = {"fused": True} if cfg["fused_adamw"] and accelerator.device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(
        groups, lr=cfg["lr"], betas=(cfg["adam_beta1"], cfg["adam_beta2"]), **fused
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if cfg[
        "compile"
    ]:  # after prepare, so DDP's hooks are traced too; the checkpoint keys lose `_orig_mod.` on save
        model = torch.compile(model)
    return model, optimizer, scheduler, phase1


def resume(accelerator, ckpt_dir, fp, fresh, steps):
    """The trainer state to start from: the last checkpoint made with the same fingerprint (loaded into the
    prepared objects), else step 0 with old checkpoints removed."""
    found = checkpoints(ckpt_dir)
    state = {"step": 0, "train_seconds": 0.0, "peak_memory_mb": 0.0, "resumed_from_steps": []}
    if found and fresh:
        log.info(f"--fresh: removing {len(found)} checkpoint(s) in {ckpt_dir}")
        found = []
    elif found:
        saved = json.loads((found[-1] / "trainer_state.json").read_text(encoding="utf-8"))
        changed = sorted(
            k
            for k in set(fp) | set(saved.get("fingerprint", {}))
            if fp.get(k) != saved.get("fingerprint", {}).get(k)
        )
        if changed:
            log.warning(
                f"warning: {found[-1]} was made with other {', '.join(changed)}; starting from step 0 (old checkpoints removed)"
            )
            found = []
        else:
            log.info(f"resuming from {found[-1]} (step {saved['step']:,} of {steps:,})")
            accelerator.load_state(str(found[-1]))
            state = saved
            state["resumed_from_steps"] = saved.get("resumed_from_steps", []) + [saved["step"]]
    accelerator.wait_for_everyone()  # every process has decided before any checkpoint is removed
    if not found and accelerator.is_main_process:
        import shutil

        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return state


# -----------------------------------------------------------------------------
# the loop


def evaluate(run):
    """Held-out bits per byte of the model now, reduced over the processes."""
    acc = run.accelerator
    return bits_per_byte(
        run.model,
        run.data.tokenizer,
        run.data.eval_texts,
        run.cfg["block_size"],
        run.cfg["eval_batch_size"],
        acc.device,
        rank=acc.process_index,
        world_size=acc.num_processes,
        reduce=lambda t: acc.reduce(t, "sum"),
    )


def last_good(ckpt_dir):
    done = checkpoints(ckpt_dir)
    return (
        f"the last good checkpoint, {done[-1]}, is kept" if done else "there is no checkpoint yet"
    )


def train_step(run, step):
    """One optimizer step over grad_accum_steps micro-batches: (loss, grad norm, lr). Stops before the update
    when the loss or the gradient is not finite."""
    import torch

    acc, cfg, accum = run.accelerator, run.cfg, run.cfg["grad_accum_steps"]
    loss_sum = torch.zeros((), device=acc.device)
    for micro in range(accum):
        x = run.data.blocks.batch(
            step, micro, acc.process_index, acc.num_processes, accum, cfg["per_device_batch_size"]
        ).to(acc.device)
        with contextlib.nullcontext() if micro == accum - 1 else acc.no_sync(run.model):
            logits = run.model(input_ids=x[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(
                logits.float().flatten(0, 1), x[:, 1:].flatten()
            )
            acc.backward(loss / accum)
        loss_sum += loss.detach()
    step_loss = acc.reduce(loss_sum / accum, "mean")
    if run.args.debug_nan_at_step is not None and step + 1 >= run.args.debug_nan_at_step:
        step_loss = step_loss * float("nan")
    grad_norm = acc.clip_grad_norm_(run.model.parameters(), cfg["grad_clip"] or float("inf"))
    lr = max(g["lr"] for g in run.optimizer.param_groups)
    if cfg["sync_every_step"]:  # a host-device sync: the price of stopping before a bad update
        step_loss = step_loss.item()
        check_finite(
            run,
            step_loss,
            grad_norm,
            f"at step {step + 1:,} (lr {lr:.3g}): training stopped before the update",
        )
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return step_loss, grad_norm, lr


def check_finite(run, loss, grad_norm, when):
    """Stop with one line when the loss or the gradient norm is not finite (fp16: the scaler skips inf steps)."""
    if not finite(loss) or (run.precision != "fp16" and not finite(grad_norm)):
        what = (
            f"loss is {float(loss)}" if not finite(loss) else f"gradient norm is {float(grad_norm)}"
        )
        run.bar.close()  # the error is the last line
        die(
            f"{what} {when}; {last_good(run.ckpt_dir)}. Lower lr in {run.config_file} or check the data"
        )


def after_step(run, step, step_loss, grad_norm, lr, interval):
    """At step's intervals: a metrics row (loss, speed), an evaluation, a checkpoint. Returns the next interval."""
    cfg, plan, steps = run.cfg, run.plan, run.plan["steps"]
    row = {}
    if step % cfg["log_interval"] == 0 or step == steps:
        if not cfg[
            "sync_every_step"
        ]:  # the loss stayed on the device since the last row: read and check it now
            step_loss, interval["loss"] = float(step_loss), float(interval["loss"])
            check_finite(
                run,
                interval["loss"],
                grad_norm,
                f"in steps {step - interval['steps'] + 1:,}-{step:,} (lr {lr:.3g})",
            )
            run.bar.set_postfix(loss=f"{step_loss:.3f}")
        row.update(
            {
                "loss": interval["loss"] / interval["steps"],
                "lr": lr,
                "tokens_per_s": plan["tokens_per_step"] * interval["steps"] / interval["seconds"],
                "bytes_per_s": plan["bytes_per_step"] * interval["steps"] / interval["seconds"],
                "grad_norm": float(grad_norm),
            }
        )
        if run.phase1:
            row["phase"] = "embeddings" if step <= run.phase1 else "all"
        interval = {"loss": 0.0, "steps": 0, "seconds": 0.0}
    if (cfg["eval_interval"] and step % cfg["eval_interval"] == 0) or step == steps:
        t_eval = time.perf_counter()
        ev = evaluate(run)
        row.update(
            {
                "eval_bits_per_byte": ev["bits_per_byte"],
                "eval_tokens_per_byte": ev["tokens_per_byte"],
                "eval_seconds": round(time.perf_counter() - t_eval, 3),
            }
        )
        log.info(
            f"step {step:,}: loss {step_loss:.4f}, held-out {ev['bits_per_byte']:.4f} bits/byte"
        )
    if row:
        run.metrics.write(
            {
                "step": step,
                "tokens_seen": step * plan["tokens_per_step"],
                "bytes_seen": round(step * plan["bytes_per_step"]),
                **row,
            }
        )
    if (cfg["checkpoint_interval"] and step % cfg["checkpoint_interval"] == 0) or step == steps:
        run.state.update(
            step=step,
            peak_memory_mb=max(run.state["peak_memory_mb"], peak_memory(run.accelerator.device)[0]),
            fingerprint=run.fp,
        )
        saved_to = save_checkpoint(
            run.accelerator, run.ckpt_dir, step, run.state, cfg["keep_checkpoints"]
        )
        log.info(f"step {step:,}: checkpoint {saved_to}")
    if run.args.debug_kill_after_step is not None and step == run.args.debug_kill_after_step:
        os.kill(os.getpid(), signal.SIGKILL)
    return interval


def train(run):
    """The loop: step 0's evaluation, then optimizer steps up to the plan, from where the run resumed."""
    step, steps, tokens_per_step = run.state["step"], run.plan["steps"], run.plan["tokens_per_step"]
    interval = {"loss": 0.0, "steps": 0, "seconds": 0.0}
    with (
        logging_redirect_tqdm(loggers=[log]),
        tqdm(
            total=steps,
            initial=step,
            desc=f"train {run.args.run_name}",
            unit="step",
            disable=not run.accelerator.is_main_process,
        ) as run.bar,
    ):
        if step == 0:
            t_eval = time.perf_counter()
            ev = evaluate(run)
            run.metrics.write(
                {
                    "step": 0,
                    "tokens_seen": 0,
                    "bytes_seen": 0,
                    "eval_bits_per_byte": ev["bits_per_byte"],
                    "eval_tokens_per_byte": ev["tokens_per_byte"],
                    "eval_seconds": round(time.perf_counter() - t_eval, 3),
                }
            )
            log.info(
                f"step 0: held-out {ev['bits_per_byte']:.4f} bits/byte ({ev['tokens_per_byte']:.3f} tokens/byte)"
            )
        while step < steps:
            t0 = time.perf_counter()
            step_loss, grad_norm, lr = train_step(run, step)
            step += 1
            dt = time.perf_counter() - t0
            run.state["train_seconds"] += dt
            interval = {
                "loss": interval["loss"] + step_loss,
                "steps": interval["steps"] + 1,
                "seconds": interval["seconds"] + dt,
            }
            run.bar.update(1)
            if run.cfg["sync_every_step"]:
                run.bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{tokens_per_step / dt:,.0f}")
            interval = after_step(run, step, step_loss, grad_norm, lr, interval)
    run.metrics.close()


# -----------------------------------------------------------------------------
# the end: the model and the summary


def save_model(run, model_dir):
    """model_dir: the trained model and tokenizer (main process), checked to reload with the same weights
    and lm_head tied to wte. Returns the final held-out figures and the peak memory."""
    import torch

    acc, steps = run.accelerator, run.plan["steps"]
    final = next(
        (r for r in reversed(run.metrics.rows) if r["step"] == steps and "eval_bits_per_byte" in r),
        None,
    )
    if final is None:  # the run ended here before: its final evaluation is not in the metrics
        ev = evaluate(run)
        final = {
            "eval_bits_per_byte": ev["bits_per_byte"],
            "eval_tokens_per_byte": ev["tokens_per_byte"],
        }
    state_dict = acc.get_state_dict(run.model)  # every process: FSDP gathers the shards
    # under torch.compile (accelerate launch --dynamo_backend ...) the keys carry the wrapper's prefix
    state_dict = {k.removeprefix("_orig_mod."): v for k, v in state_dict.items()}
    peak_mb, peak_kind = peak_memory(acc.device)
    if acc.is_main_process:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        unwrapped = acc.unwrap_model(run.model, keep_torch_compile=False)
        if unwrapped.generation_config is not None:
            unwrapped.generation_config.pad_token_id = EOT_ID
        with atomic_path(model_dir) as tmp:
            unwrapped.save_pretrained(
                str(tmp), state_dict=dict(state_dict)
            )  # it empties the dict it gets
            save_hf_tokenizer(
                run.data.tokenizer, tmp, model_max_length=run.data.model_config.n_positions
            )
            reloaded = AutoModelForCausalLM.from_pretrained(str(tmp))
            if (
                reloaded.get_output_embeddings().weight
                is not reloaded.get_input_embeddings().weight
            ):
                die(f"{tmp}: the saved model does not reload with lm_head tied to wte")
            differ = [
                k
                for k, v in reloaded.state_dict().items()
                if k not in state_dict or not torch.equal(v, state_dict[k].to(v))
            ]
            if differ:
                die(
                    f"{tmp}: the saved model reloads with other weights ({differ[0]}, {len(differ)} in all); not kept"
                )
            AutoTokenizer.from_pretrained(str(tmp))
    return final, max(peak_mb, run.state["peak_memory_mb"]), peak_kind


def speed_settings(run):
    """The switches that set the speed, the attention kernel used, and model FLOPs utilisation on a known GPU."""
    import torch

    unwrapped = run.accelerator.unwrap_model(run.model, keep_torch_compile=False)
    config = unwrapped.config
    per_token = flops_per_token(
        sum(p.numel() for p in unwrapped.parameters()),
        config.n_layer,
        config.n_embd,
        run.cfg["block_size"],
    )
    device = (
        torch.cuda.get_device_name(run.accelerator.device)
        if run.accelerator.device.type == "cuda"
        else None
    )
    peak = peak_flops(device)
    tokens_per_s = (
        run.plan["steps"] * run.plan["tokens_per_step"] / max(run.state["train_seconds"], 1e-9)
    )
    return {
        "attn_implementation": config._attn_implementation,
        "compile": run.cfg["compile"],
        "tf32": run.cfg["tf32"],
        "fused_adamw": run.cfg["fused_adamw"],
        "sync_every_step": run.cfg["sync_every_step"],
        "gpu": device,
        "flops_per_token": per_token,
        "flops_formula": "6 N + 12 L d T (N params, tied wte counted once)",
        "mfu": per_token * tokens_per_s / run.accelerator.num_processes / peak if peak else None,
    }


def write_summary(run, out_dir, model_dir, final, peak_mb, peak_kind, head, step):
    """summary.json (its first keys: head, the script's own), the Make target: written last, with the resolved
    config of `step` beside it."""
    data, plan, steps, rows = run.data, run.plan, run.plan["steps"], run.metrics.rows
    initial = next((r for r in rows if r["step"] == 0 and "eval_bits_per_byte" in r), {})
    train_seconds = run.state["train_seconds"]
    summary = {
        **head,
        "device": run.accelerator.device.type,
        "processes": run.accelerator.num_processes,
        "precision": run.precision,
        "steps": steps,
        "block_size": run.cfg["block_size"],
        "tokens_per_step": plan["tokens_per_step"],
        "bytes_per_step": plan["bytes_per_step"],
        "train": {
            "documents": len(data.train_texts),
            "bytes": data.train_bytes,
            "tokens": data.train_tokens,
            "tokens_per_byte": data.train_tokens / data.train_bytes,
        },
        "tokens_seen": steps * plan["tokens_per_step"],
        "bytes_seen": round(steps * plan["bytes_per_step"]),
        "epochs": steps * plan["bytes_per_step"] / data.train_bytes,
        "train_seconds": round(train_seconds, 3),
        "seconds_per_step": train_seconds / max(steps, 1),
        "tokens_per_s": steps * plan["tokens_per_step"] / max(train_seconds, 1e-9),
        "bytes_per_s": steps * plan["bytes_per_step"] / max(train_seconds, 1e-9),
        "final_loss": next((r["loss"] for r in reversed(rows) if "loss" in r), None),
        "heldout": {
            "documents": len(data.eval_texts),
            "bytes": data.eval_bytes,
            "initial_bits_per_byte": initial.get("eval_bits_per_byte"),
            "initial_tokens_per_byte": initial.get("eval_tokens_per_byte"),
            "bits_per_byte": final["eval_bits_per_byte"],
            "tokens_per_byte": final["eval_tokens_per_byte"],
        },
        "peak_memory_mb": round(peak_mb, 1),
        "peak_memory_kind": peak_kind,
        **speed_settings(run),
        "resumed_from_steps": run.state["resumed_from_steps"],
        "metrics": str(run.metrics.path),
    }
    save_config(run.cfg, out_dir / f"{step}.config.yaml", step, run.args.profile)
    write_json(out_dir / "summary.json", summary)
    log.info(
        f"{steps:,} steps, {summary['seconds_per_step']:.3f} s/step, {summary['tokens_per_s']:,.0f} tokens/s, "
        f"{summary['bytes_per_s']:,.0f} bytes/s; held-out {final['eval_bits_per_byte']:.4f} bits/byte "
        f"(step 0: {initial.get('eval_bits_per_byte', float('nan')):.4f}); peak memory {peak_mb:,.0f} MB"
    )
    log.info(f"wrote {model_dir} and {out_dir / 'summary.json'}")
