"""
bench: what a run costs. Wall time, throughput and peak memory of every step, side by side with the
reference tools, and how 03 and 04 grow with the corpus. A measurement, not a test: nothing here runs in
`make test`, and it needs no network.

    .venv/bin/python scripts/bench.py [--repeats 3] [--analyze-sizes-mb 100 1000] [--distill-sizes-mb 5 20 80]
    make bench                                                  (BENCH_ARGS="..." passes flags)
    make bench BENCH_ARGS="--only gpu"     (on a GPU machine: re-run section 5, reuse the rest of bench.json)

Writes to artifacts/bench/: bench.md, bench.json, bench.config.yaml, and its work dirs (pipeline/, scale/).
  1. The pipeline through Make (PROFILE=bench: the default corpus with a tiny random GPT-2, so 07-08 run
     offline), each step timed with its peak RSS; 05-07 again by their scripts, step_repeats times in all.
  2. A no-op `make all`: its time, and that it would start no process (`make -n` prints no command).
  3. 03 analyze on the train split against plain `tokenizers` encode_batch and, when installed, tiktoken
     built from the same GPT-2 files; alternated, the median of `repeats` runs each.
  4. 03 on corpora of analyze_sizes_mb and 04 on corpora of distill_sizes_mb (train documents repeated
     and shuffled): wall time, throughput, peak RSS, and the growth exponent between sizes.
  5. With a GPU: a GPT-2-small-shaped model's training tokens/s and model FLOPs utilisation, eager (as 08
     trains) and under torch.compile.
Each section records the date and machine it was measured on, so a report can combine sections measured
on different machines (--only), and says so.
"""

import argparse
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import load_config, save_config
from lib.files import iter_docs, write_json, write_text
from lib.log import die, log, setup_logging
from lib.paths import DEFAULT_ARTIFACTS, ROOT, Artifacts
from lib.tokenizer import EOT, EOT_ID, GPT2_PATTERN, gpt2_packaged_files, piece_bytes

STEP = "bench"
SECTIONS = ("pipeline", "analyze", "scaling", "gpu")  # 1-2, 3, 4, 5
PIPELINE = ["init", "corpus", "analyze", "distill", "select", "remap", "align", "train"]
SCRIPTS = {"select": "05_select.py", "remap": "06_remap.py", "align": "07_align.py"}
# Dense bf16 peak of common GPUs (FLOP/s), for model FLOPs utilisation.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12,
             "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12, "T4": 65e12}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int)
    p.add_argument("--step-repeats", type=int)
    p.add_argument("--analyze-sizes-mb", type=float, nargs="*")
    p.add_argument("--distill-sizes-mb", type=float, nargs="*")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION",
                   help=f"re-run these sections ({', '.join(SECTIONS)}); the others are reused from the last "
                        "bench.json. analyze and scaling use the corpus of the last pipeline section")
    p.add_argument("--artifacts", default=str(DEFAULT_ARTIFACTS), help="artifacts root (Make: ARTIFACTS=)")
    p.add_argument("--profile", default="default", help="config profile of the bench's own config")
    p.add_argument("--configs", default=None, help="configs directory (default: configs/)")
    return p.parse_args()


# -----------------------------------------------------------------------------
# timing a child process


def timed(cmd, log_path, env=None):
    """Run cmd (output appended to log_path); (seconds, peak RSS in MB of its largest process). Dies on failure.

    The peak is read in a fresh helper process, whose RUSAGE_CHILDREN covers only this command."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "rc = subprocess.call(sys.argv[1:]); s = time.perf_counter() - t; "
             "print(rc, s, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    with open(log_path, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(map(str, cmd))}\n")
        out.flush()
        result = subprocess.run([sys.executable, "-c", probe, *map(str, cmd)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=out, text=True)
    try:
        tail = result.stdout.strip().splitlines()[-1]
        rc, seconds, rss_kb = tail.split()
    except (IndexError, ValueError):
        die(f"bench: could not time `{' '.join(map(str, cmd))}`; see {log_path}")
    if rc != "0":
        die(f"bench: `{' '.join(map(str, cmd))}` failed (exit {rc}); see {log_path}")
    return float(seconds), int(rss_kb) / 1024


def script_cmd(script, artifacts, configs, profile="default"):
    """The command Make runs for a step script."""
    return [ROOT / ".venv" / "bin" / "python", ROOT / "scripts" / script, "--artifacts", artifacts,
            "--profile", profile, "--configs", configs]


def median(xs):
    return statistics.median(xs) if xs else None


# -----------------------------------------------------------------------------
# 1-2: the pipeline through Make, and a no-op make


def make_cmd(run_dir, *targets):
    return ["make", "--no-print-directory", "-C", str(ROOT), *targets, "PROFILE=bench", f"ARTIFACTS={run_dir}"]


# Under `make bench` the outer make's variables (ARTIFACTS=, PROFILE=) reach inner makes through MAKEFLAGS.
MAKE_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def bench_pipeline(run_dir, step_repeats, log_path, configs):
    shutil.rmtree(run_dir, ignore_errors=True)
    steps = {}
    for step in PIPELINE[:-1]:
        seconds, rss = timed(make_cmd(run_dir, step), log_path, MAKE_ENV)
        steps[step] = {"runs": [seconds], "peak_rss_mb": rss}
        log.info(f"{step}: {seconds:.1f} s, peak RSS {rss:,.0f} MB")
    # 05-07 again, by the same command Make runs, so their median is over step_repeats runs
    for _ in range(step_repeats - 1):
        for step, script in SCRIPTS.items():
            seconds, rss = timed(script_cmd(script, run_dir, configs, "bench"), log_path)
            steps[step]["runs"].append(seconds)
            steps[step]["peak_rss_mb"] = max(steps[step]["peak_rss_mb"], rss)
    seconds, rss = timed(make_cmd(run_dir, "train"), log_path, MAKE_ENV)
    steps["train"] = {"runs": [seconds], "peak_rss_mb": rss}
    for s in steps.values():
        s["seconds"] = median(s["runs"])
    train = json.loads((Artifacts(run_dir).training / "summary.json").read_text(encoding="utf-8"))
    steps["train"].update({k: train[k] for k in ("steps", "tokens_per_s", "bytes_per_s", "device", "processes")})
    return steps


def bench_noop_make(run_dir, repeats):
    """The time of `make all` with everything up to date, and the commands `make -n all` would run."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(make_cmd(run_dir, "all"), check=True, capture_output=True, env=MAKE_ENV)
        runs.append(time.perf_counter() - t0)
    dry = subprocess.run(make_cmd(run_dir, "-n", "all"), check=True, capture_output=True, text=True, env=MAKE_ENV).stdout
    commands = [line for line in dry.splitlines() if line.strip() and not line.startswith("make")]
    return {"runs": runs, "seconds": median(runs), "commands_it_would_run": commands}


# -----------------------------------------------------------------------------
# 3: 03 analyze beside the reference tokenizers


def tiktoken_gpt2():
    """tiktoken's Encoding from the same GPT-2 files (no download), or None when tiktoken is not installed."""
    try:
        import tiktoken
    except ImportError:
        return None
    encoder_path, _ = gpt2_packaged_files()
    encoder = json.loads(Path(encoder_path).read_text(encoding="utf-8"))
    ranks = {piece_bytes(s): i for s, i in encoder.items() if s != EOT}
    return tiktoken.Encoding(name="gpt2-files", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={EOT: EOT_ID}, explicit_n_vocab=len(ranks) + 1)


def bench_analyze(run_dir, repeats, log_path, configs):
    from tokenizers import Tokenizer

    art = Artifacts(run_dir)
    texts = list(iter_docs(art.train_docs))
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    hf = Tokenizer.from_file(str(art.original_tokenizer / "tokenizer.json"))
    tt = tiktoken_gpt2()
    if tt is not None:  # the fast path must be the same function, or its speed means nothing
        sample = texts[: min(len(texts), 50)]
        same = [e.ids for e in hf.encode_batch(sample, add_special_tokens=False)] == tt.encode_ordinary_batch(sample)
        if not same:
            die("bench: tiktoken built from GPT-2's files disagrees with tokenizers' GPT-2 BPE; not comparable")
    cmd = script_cmd("03_analyze.py", run_dir, configs, "bench")
    runs = {"analyze": [], "analyze_wall": [], "hf_encode_batch": [], "tiktoken": []}
    rss = 0.0
    for _ in range(repeats):  # alternated, so drift of the machine hits each the same
        seconds, peak = timed(cmd, log_path)
        summary = json.loads((art.reports / "analyze_summary.json").read_text(encoding="utf-8"))
        runs["analyze"].append(summary["mb_per_s"])
        runs["analyze_wall"].append(n_bytes / 1e6 / seconds)
        rss = max(rss, peak)
        t0 = time.perf_counter()
        hf.encode_batch(texts, add_special_tokens=False)
        runs["hf_encode_batch"].append(n_bytes / 1e6 / (time.perf_counter() - t0))
        if tt is not None:
            t0 = time.perf_counter()
            tt.encode_ordinary_batch(texts, num_threads=os.cpu_count())
            runs["tiktoken"].append(n_bytes / 1e6 / (time.perf_counter() - t0))
    result = {"bytes": n_bytes, "documents": len(texts), "runs_mb_per_s": runs, "analyze_peak_rss_mb": rss,
              "tiktoken_installed": tt is not None}
    for name, xs in runs.items():
        result[f"{name}_mb_per_s"] = median(xs)
    result["analyze_vs_hf"] = result["analyze_mb_per_s"] / result["hf_encode_batch_mb_per_s"]
    result["analyze_vs_tiktoken"] = result["analyze_mb_per_s"] / result["tiktoken_mb_per_s"] if tt is not None else None
    return result


# -----------------------------------------------------------------------------
# 4: how 03 and 04 grow with the corpus


def scaled_corpus(run_dir, out_dir, size_mb, seed):
    """out_dir: the original tokenizer and held-out split of run_dir, and a train split of size_mb made by
    repeating the train documents, each pass shuffled."""
    src, dst = Artifacts(run_dir), Artifacts(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.copytree(src.original_tokenizer, dst.original_tokenizer)
    dst.cleaned.mkdir(parents=True)
    shutil.copy(src.heldout_docs, dst.heldout_docs)
    with open(src.train_docs, encoding="utf-8") as f:
        lines = f.readlines()  # one record a line; str.splitlines would also cut at U+2028 inside a text
    rng, target, size, k = random.Random(seed), int(size_mb * 1e6), 0, 0
    with open(dst.train_docs, "w", encoding="utf-8") as f:
        while size < target:
            order = list(range(len(lines)))
            rng.shuffle(order)
            for i in order:
                doc = json.loads(lines[i])
                doc["id"] = f"{doc['id']}-{k}"
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
                size += len(doc["text"].encode("utf-8"))
                if size >= target:
                    break
            k += 1
    return size


def bench_scaling(run_dir, sizes, distill, seed, log_path, configs):
    rows = []
    for size_mb in sizes:
        out_dir = run_dir.parent / "scale" / f"{size_mb:g}MB"
        n_bytes = scaled_corpus(run_dir, out_dir, size_mb, seed)
        seconds, rss = timed(script_cmd("03_analyze.py", out_dir, configs), log_path)
        row = {"mb": n_bytes / 1e6, "analyze_seconds": seconds, "analyze_peak_rss_mb": rss,
               "analyze_mb_per_s": n_bytes / 1e6 / seconds}
        if distill:
            seconds, rss = timed(script_cmd("04_distill.py", out_dir, configs), log_path)
            report = json.loads((Artifacts(out_dir).reports / "distill_validation.json").read_text(encoding="utf-8"))
            row.update({"distill_seconds": seconds, "distill_peak_rss_mb": rss,
                        "distill_learning_seconds": report["seconds_learning"],
                        "distilled_vs_bpe_encode": report["throughput"]["ratio"],
                        "heldout_agreement": report["heldout"]["pretoken_occurrence_agreement"]})
        log.info(f"{'distill' if distill else 'analyze'} at {n_bytes / 1e6:,.0f} MB: "
                 + ", ".join(f"{k} {v:,.2f}" for k, v in row.items() if k != "mb"))
        rows.append(row)
        shutil.rmtree(out_dir)  # a GB of corpus and ids; the figures are kept
    for prev, row in zip(rows, rows[1:]):  # t ~ size^k between neighbouring sizes; k = 1 is linear
        for key in ("analyze_seconds", "distill_seconds", "analyze_peak_rss_mb", "distill_peak_rss_mb"):
            if key in row:
                row[f"{key}_growth_exponent"] = math.log(row[key] / prev[key]) / math.log(row["mb"] / prev["mb"])
    return rows


# -----------------------------------------------------------------------------
# 5: a GPT-2-small-shaped model on a GPU


def bench_gpu(steps, batch_size, block_size, compile_too):
    """Training steps of a randomly initialised GPT-2 small (124M) on the first GPU: bf16 autocast, fused
    AdamW, the batch shape 08 trains with. Eager (as 08 runs) and, with compile_too, under torch.compile."""
    import torch

    if not torch.cuda.is_available():
        return {"available": False}
    from transformers import GPT2Config, GPT2LMHeadModel

    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    x = torch.randint(0, 50257, (batch_size, block_size), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    result = {"available": True, "device": name, "torch": torch.__version__, "batch_size": batch_size,
              "block_size": block_size, "peak_bf16_flops": peak, "variants": {}}
    for variant in ("eager", "compiled") if compile_too else ("eager",):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(n_positions=block_size)).cuda()
        n_params = sum(p.numel() for p in model.parameters())  # wte is tied to lm_head: counted once
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        forward = torch.compile(model) if variant == "compiled" else model
        torch.cuda.reset_peak_memory_stats()
        times = []
        t_start = time.perf_counter()
        for step in range(steps + 3):  # 3 warm-up steps (compilation happens in the first)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = forward(input_ids=x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            if step >= 3:
                times.append(time.perf_counter() - t0)
        tokens_per_s = batch_size * block_size / median(times)
        cfg = model.config  # 6N per token, plus attention: 12 * layers * d_model * context (PaLM, nanoGPT)
        flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.n_embd * block_size
        result["params"] = n_params
        result["variants"][variant] = {
            "tokens_per_s": tokens_per_s, "seconds_per_step": median(times), "steps_timed": steps,
            "warmup_seconds": time.perf_counter() - t_start - sum(times), "final_loss": loss.item(),
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
            "mfu": flops_per_token * tokens_per_s / peak if peak else None}
        log.info(f"GPU {variant}: {tokens_per_s:,.0f} tokens/s" + (f", MFU {100 * result['variants'][variant]['mfu']:.1f}%" if peak else ""))
        del model, opt, forward
        torch.cuda.empty_cache()
    return result


def machine_info():
    import tokenizers
    import torch

    return {"cpus": os.cpu_count(), "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__, "tokenizers": tokenizers.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def machine_line(m):
    return (f"{m['cpus']} CPU cores, {m['memory_gb']:.0f} GiB" + (f", {m['gpu']}" if m.get("gpu") else "")
            + f", {m['platform']}, Python {m['python']}, torch {m['torch']}, tokenizers {m['tokenizers']}")


# -----------------------------------------------------------------------------
# the report


def report_md(r):
    f = lambda x, d=2: "—" if x is None else f"{x:,.{d}f}"
    measured = r["measured"]
    lines = ["# What a run costs", ""]
    by_machine = {}  # sections grouped by the (date, machine) they were measured on
    for section in SECTIONS:
        key = (measured[section]["date"], machine_line(measured[section]["machine"]))
        by_machine.setdefault(key, []).append(section)
    titles = {"pipeline": "the pipeline and no-op make", "analyze": "03 beside the reference tokenizers",
              "scaling": "03 and 04 against corpus size", "gpu": "GPU"}
    for (date, machine), sections in by_machine.items():
        which = "" if len(by_machine) == 1 else " (" + "; ".join(titles[s] for s in sections) + ")"
        lines.append(f"Measured{which} {date} on {machine}.")
    lines += ["", f"Throughput figures are the median of {r['config']['repeats']} alternated runs; step times the "
              "median of their runs.", "",
             "## The pipeline on the default corpus (PROFILE=bench: a tiny random GPT-2 for 07-08)", "",
             "| step | wall s (median) | runs | peak RSS MB |", "|---|---:|---:|---:|"]
    for step, s in r["pipeline"].items():
        lines.append(f"| {step} | {f(s['seconds'], 1)} | {len(s['runs'])} | {f(s['peak_rss_mb'], 0)} |")
    t = r["pipeline"]["train"]
    lines += ["", f"08 train (tiny random model, {t['device']}, {t['processes']} process): {f(t['tokens_per_s'], 0)} "
              f"tokens/s, {f(t['bytes_per_s'], 0)} bytes/s over {t['steps']:,} steps.", ""]
    n = r["noop_make"]
    lines += ["## No-op make", "",
              f"`make all` with everything up to date: **{f(n['seconds'], 3)} s** (median of {len(n['runs'])}); "
              f"`make -n all` would run {len(n['commands_it_would_run'])} commands"
              + (": " + "; ".join(n["commands_it_would_run"][:3]) if n["commands_it_would_run"] else " (no Python process)") + ".", ""]
    a = r["analyze"]
    lines += ["## 03 analyze beside the reference tokenizers", "",
              f"The train split, {a['bytes']:,} bytes in {a['documents']:,} documents, all cores.", "",
              "| | MB/s | vs HF encode_batch |", "|---|---:|---:|",
              f"| 03 analyze (encode loop, as it reports) | {f(a['analyze_mb_per_s'])} | {f(a['analyze_vs_hf'])}× |",
              f"| 03 analyze (whole process, start-up included) | {f(a['analyze_wall_mb_per_s'])} | |",
              f"| tokenizers GPT-2 BPE `encode_batch` | {f(a['hf_encode_batch_mb_per_s'])} | 1.00× |",
              f"| tiktoken from the same files | {f(a['tiktoken_mb_per_s'])} | "
              + (f"{f(a['tiktoken_mb_per_s'] / a['hf_encode_batch_mb_per_s'])}× |" if a["tiktoken_installed"] else "not installed |"),
              "", f"Peak RSS of 03 on it: {f(a['analyze_peak_rss_mb'], 0)} MB.", ""]
    for key, title, c in (("analyze_scaling", "03 analyze against corpus size", "analyze"),
                          ("distill_scaling", "04 distill against corpus size", "distill")):
        rows = r[key]
        if not rows:
            continue
        lines += [f"## {title}", "", "Corpora made by repeating and shuffling the train documents; one run per size. "
                  "Growth: the exponent k in time ~ size^k from the size before (1 = linear).", "",
                  f"| MB | {c} s | growth | peak RSS MB | growth |" + (" learning s | encode vs BPE | held-out agreement |" if c == "distill" else " MB/s |"),
                  "|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if c == "distill" else "---:|")]
        for row in rows:
            extra = (f" {f(row['distill_learning_seconds'], 1)} | {f(row['distilled_vs_bpe_encode'])} | "
                     f"{100 * row['heldout_agreement']:.4f}% |" if c == "distill" else f" {f(row['analyze_mb_per_s'])} |")
            lines.append(f"| {f(row['mb'], 0)} | {f(row[c + '_seconds'], 1)} | {f(row.get(c + '_seconds_growth_exponent'))} | "
                         f"{f(row[c + '_peak_rss_mb'], 0)} | {f(row.get(c + '_peak_rss_mb_growth_exponent'))} |" + extra)
        lines.append("")
    g = r["gpu"]
    lines += ["## GPU", ""]
    if not g["available"]:
        lines.append("No GPU on this machine: skipped. Where one is present this section gives a GPT-2-small-shaped "
                     "model's training tokens/s, peak memory and model FLOPs utilisation (bf16), eager and compiled.")
    else:
        lines += [f"{g['device']}, torch {g['torch']}: a random GPT-2 small ({g['params']:,} parameters), batch "
                  f"{g['batch_size']} × {g['block_size']} tokens, bf16 autocast, fused AdamW; the median of the "
                  "timed steps after 3 warm-up steps. MFU counts 6 × parameters + 12 × layers × width × context "
                  f"FLOPs per token against {f(g['peak_bf16_flops'] / 1e12, 0) if g['peak_bf16_flops'] else 'an unknown'} "
                  "TFLOP/s dense bf16.", "",
                  "| variant | tokens/s | s/step | MFU | peak memory GiB | warm-up s |", "|---|---:|---:|---:|---:|---:|"]
        for name, v in g["variants"].items():
            lines.append(f"| {'eager (as 08 trains)' if name == 'eager' else 'torch.compile'} | "
                         f"{f(v['tokens_per_s'], 0)} | {f(v['seconds_per_step'], 3)} | "
                         f"{f(100 * v['mfu'], 1) + '%' if v['mfu'] else '—'} | {f(v['peak_memory_gb'], 1)} | "
                         f"{f(v['warmup_seconds'], 1)} |")
    return "\n".join(lines) + "\n"


# -----------------------------------------------------------------------------


def main():
    args = parse_args()
    art = Artifacts(args.artifacts)
    cfg = load_config(STEP, args.profile, args.configs, {
        "repeats": args.repeats, "step_repeats": args.step_repeats,
        "analyze_sizes_mb": args.analyze_sizes_mb, "distill_sizes_mb": args.distill_sizes_mb})
    for key in ("repeats", "step_repeats", "gpu_steps", "gpu_batch_size", "gpu_block_size"):
        if cfg[key] < 1:
            die(f"configs/bench.yaml: {key} must be at least 1, got {cfg[key]}")
    for key in ("analyze_sizes_mb", "distill_sizes_mb"):
        if not all(isinstance(x, (int, float)) and x > 0 for x in cfg[key]):
            die(f"configs/bench.yaml: {key} must be a list of sizes in MB above 0, got {cfg[key]}")
    bench_dir = art.root.resolve() / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(STEP, art.log_file(STEP))
    configs = Path(args.configs or ROOT / "configs").resolve()
    run_dir, log_path = bench_dir / "pipeline", bench_dir / "commands.log"
    t_start = time.perf_counter()

    # Sections not re-run come from the last bench.json, with the date and machine they were measured on.
    previous = {}
    if set(args.only) != set(SECTIONS):
        if not (bench_dir / "bench.json").exists():
            die(f"--only {' '.join(args.only)} needs an earlier bench.json in {bench_dir}: run `make bench` first")
        previous = json.loads((bench_dir / "bench.json").read_text(encoding="utf-8"))
        if "measured" not in previous:
            die(f"{bench_dir / 'bench.json'} is from an older bench; run `make bench` without --only once")
    if "pipeline" not in args.only and {"analyze", "scaling"} & set(args.only) and not (run_dir / "training" / "summary.json").exists():
        die(f"--only {' '.join(args.only)} uses the corpus of the pipeline section in {run_dir}, which is missing; "
            "add pipeline to --only")
    here = {"date": time.strftime("%Y-%m-%d"), "machine": machine_info()}
    result = {"config": cfg, "measured": {}}
    for section in SECTIONS:
        if section in args.only:
            result["measured"][section] = here
        else:
            result["measured"][section] = previous["measured"][section]
            keys = {"pipeline": ("pipeline", "noop_make"), "analyze": ("analyze",),
                    "scaling": ("analyze_scaling", "distill_scaling"), "gpu": ("gpu",)}[section]
            result.update({k: previous[k] for k in keys})

    # --- 1-2: the pipeline, and a no-op make
    if "pipeline" in args.only:
        log.info("1. the pipeline through make (PROFILE=bench)")
        result["pipeline"] = bench_pipeline(run_dir, cfg["step_repeats"], log_path, configs)
        result["noop_make"] = bench_noop_make(run_dir, cfg["repeats"])
        log.info(f"2. no-op make all: {result['noop_make']['seconds']:.3f} s, "
                 f"{len(result['noop_make']['commands_it_would_run'])} commands")

    # --- 3: analyze beside the reference tokenizers
    if "analyze" in args.only:
        log.info("3. 03 analyze beside tokenizers encode_batch and tiktoken")
        result["analyze"] = bench_analyze(run_dir, cfg["repeats"], log_path, configs)
        a = result["analyze"]
        log.info(f"analyze {a['analyze_mb_per_s']:.2f} MB/s, HF encode_batch {a['hf_encode_batch_mb_per_s']:.2f} "
                 f"MB/s, tiktoken {a['tiktoken_mb_per_s'] or 0:.2f} MB/s")

    # --- 4: scaling
    if "scaling" in args.only:
        log.info("4. 03 and 04 against corpus size")
        result["analyze_scaling"] = bench_scaling(run_dir, cfg["analyze_sizes_mb"], False, cfg["seed"], log_path, configs)
        result["distill_scaling"] = bench_scaling(run_dir, cfg["distill_sizes_mb"], True, cfg["seed"], log_path, configs)

    # --- 5: GPU
    if "gpu" in args.only:
        log.info("5. GPT-2 small training steps on the GPU")
        result["gpu"] = bench_gpu(cfg["gpu_steps"], cfg["gpu_batch_size"], cfg["gpu_block_size"], cfg["gpu_compile"])
    result["seconds"] = time.perf_counter() - t_start

    write_json(bench_dir / "bench.json", result)
    write_text(bench_dir / "bench.md", report_md(result))
    save_config(cfg, bench_dir / f"{STEP}.config.yaml", STEP, args.profile)
    log.info(f"wrote {bench_dir / 'bench.md'} ({result['seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
