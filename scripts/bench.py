"""
bench: what a run costs. Wall time, throughput and peak memory of every step, side by side with the
reference tools, and how 03 and 04 grow with the corpus. A measurement, not a test: nothing here runs in
`make test`, and it needs no network.

    .venv/bin/python scripts/bench.py [--repeats 3] [--scaling-sizes-mb 100 1000] [--no-scaling-real]
    make bench                                                  (BENCH_ARGS="..." passes flags)
    make bench BENCH_ARGS="--only gpu"     (on a GPU machine: re-run section 5, reuse the rest of bench.json)

Writes to artifacts/bench/: bench.md, bench.json, bench.config.yaml, and its work dirs (pipeline/, scale/).
  1. The pipeline through Make (PROFILE=bench: the default corpus with a tiny random GPT-2, so 07-08 run
     offline), each step timed with its peak RSS; 05-07 again by their scripts, step_repeats times in all.
  2. A no-op `make all`: its time, and that it would start no process (`make -n` prints no command).
  3. 03 analyze on the train split against plain `tokenizers` encode_batch and, when installed, tiktoken
     built from the same GPT-2 files; alternated, the median of `repeats` runs each.
  4. 02-06 on a real corpus (the .py files of this install's .venv site-packages) and on corpora of
     scaling_sizes_mb (the train documents repeated and shuffled): wall time and peak RSS of each step, the
     growth exponent between sizes, and the figures each step reports (agreement, saving).
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
from lib.flops import flops_per_token, peak_flops
from lib.log import die, log, setup_logging
from lib.paths import DEFAULT_ARTIFACTS, ROOT, Artifacts
from lib.tokenizer import EOT, EOT_ID, GPT2_PATTERN, gpt2_packaged_files, piece_bytes

STEP = "bench"
SECTIONS = ("pipeline", "analyze", "scaling", "gpu")  # 1-2, 3, 4, 5
PIPELINE = ["init", "corpus", "analyze", "distill", "select", "remap", "align", "train"]
SCRIPTS = {"select": "05_select.py", "remap": "06_remap.py", "align": "07_align.py"}


def parse_args():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeats", type=int)
    p.add_argument("--step-repeats", type=int)
    p.add_argument("--scaling-sizes-mb", type=float, nargs="*")
    p.add_argument("--scaling-real", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        metavar="SECTION",
        help=f"re-run these sections ({', '.join(SECTIONS)}); the others are reused from the last "
        "bench.json. analyze and scaling use the corpus of the last pipeline section",
    )
    p.add_argument(
        "--artifacts", default=str(DEFAULT_ARTIFACTS), help="artifacts root (Make: ARTIFACTS=)"
    )
    p.add_argument("--profile", default="default", help="config profile of the bench's own config")
    p.add_argument("--configs", default=None, help="configs directory (default: configs/)")
    return p.parse_args()


# -----------------------------------------------------------------------------
# timing a child process


def timed(cmd, log_path, env=None):
    """Run cmd (output appended to log_path); (seconds, peak RSS in MB of its largest process). Dies on failure.

    The peak is read in a fresh helper process, whose RUSAGE_CHILDREN covers only this command."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "rc = subprocess.call(sys.argv[1:]); s = time.perf_counter() - t; "
        "print(rc, s, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    with open(log_path, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(map(str, cmd))}\n")
        out.flush()
        result = subprocess.run(
            [sys.executable, "-c", probe, *map(str, cmd)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
        )
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
    return [
        ROOT / ".venv" / "bin" / "python",
        ROOT / "scripts" / script,
        "--artifacts",
        artifacts,
        "--profile",
        profile,
        "--configs",
        configs,
    ]


def median(xs):
    return statistics.median(xs) if xs else None


# -----------------------------------------------------------------------------
# 1-2: the pipeline through Make, and a no-op make


def make_cmd(run_dir, *targets):
    return [
        "make",
        "--no-print-directory",
        "-C",
        str(ROOT),
        *targets,
        "PROFILE=bench",
        f"ARTIFACTS={run_dir}",
    ]


# Under `make bench` the outer make's variables (ARTIFACTS=, PROFILE=) reach inner makes through MAKEFLAGS.
MAKE_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
}


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
    steps["train"].update(
        {k: train[k] for k in ("steps", "tokens_per_s", "bytes_per_s", "device", "processes")}
    )
    return steps


def bench_noop_make(run_dir, repeats):
    """The time of `make all` with everything up to date, and the commands `make -n all` would run."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(make_cmd(run_dir, "all"), check=True, capture_output=True, env=MAKE_ENV)
        runs.append(time.perf_counter() - t0)
    dry = subprocess.run(
        make_cmd(run_dir, "-n", "all"), check=True, capture_output=True, text=True, env=MAKE_ENV
    ).stdout
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
    return tiktoken.Encoding(
        name="gpt2-files",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={EOT: EOT_ID},
        explicit_n_vocab=len(ranks) + 1,
    )


def bench_analyze(run_dir, repeats, log_path, configs):
    from tokenizers import Tokenizer

    art = Artifacts(run_dir)
    texts = list(iter_docs(art.train_docs))
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    hf = Tokenizer.from_file(str(art.original_tokenizer / "tokenizer.json"))
    tt = tiktoken_gpt2()
    if tt is not None:  # the fast path must be the same function, or its speed means nothing
        sample = texts[: min(len(texts), 50)]
        same = [
            e.ids for e in hf.encode_batch(sample, add_special_tokens=False)
        ] == tt.encode_ordinary_batch(sample)
        if not same:
            die(
                "bench: tiktoken built from GPT-2's files disagrees with tokenizers' GPT-2 BPE; not comparable"
            )
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
    result = {
        "bytes": n_bytes,
        "documents": len(texts),
        "runs_mb_per_s": runs,
        "analyze_peak_rss_mb": rss,
        "tiktoken_installed": tt is not None,
    }
    for name, xs in runs.items():
        result[f"{name}_mb_per_s"] = median(xs)
    result["analyze_vs_hf"] = result["analyze_mb_per_s"] / result["hf_encode_batch_mb_per_s"]
    result["analyze_vs_tiktoken"] = (
        result["analyze_mb_per_s"] / result["tiktoken_mb_per_s"] if tt is not None else None
    )
    return result


# -----------------------------------------------------------------------------
# 4: 02-06 at scale: a real corpus (site-packages code) and corpora made by repeating the train documents

SCALE_STEPS = [
    ("corpus", "02_corpus.py"),
    ("analyze", "03_analyze.py"),
    ("distill", "04_distill.py"),
    ("select", "05_select.py"),
    ("remap", "06_remap.py"),
]


def real_corpus(raw_dir):
    """raw_dir: links to the .py files of this project's .venv site-packages (a real code corpus every
    install has offline); (files, bytes)."""
    shutil.rmtree(raw_dir, ignore_errors=True)
    n_files = n_bytes = 0
    for site in sorted((ROOT / ".venv" / "lib").glob("python*/site-packages")):
        for path in sorted(site.rglob("*.py")):
            if path.is_file():
                link = raw_dir / path.relative_to(site)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path)
                n_files, n_bytes = n_files + 1, n_bytes + path.stat().st_size
    return n_files, n_bytes


def repeated_corpus(run_dir, raw_dir, size_mb, seed):
    """raw_dir/corpus.jsonl: the train documents of run_dir repeated to size_mb, each pass shuffled, each copy
    made distinct by a first line '# copy k' (02 drops exact duplicates); its bytes."""
    shutil.rmtree(raw_dir, ignore_errors=True)
    raw_dir.mkdir(parents=True)
    texts = list(iter_docs(Artifacts(run_dir).train_docs))
    rng, target, size, k = random.Random(seed), int(size_mb * 1e6), 0, 0
    with open(raw_dir / "corpus.jsonl", "w", encoding="utf-8") as f:
        while size < target:
            order = list(range(len(texts)))
            rng.shuffle(order)
            for i in order:
                text = f"# copy {k}\n{texts[i]}"
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                size += len(text.encode("utf-8"))
                if size >= target:
                    break
            k += 1
    return size


def scale_configs(configs, out_dir, text_extensions):
    """A copy of the configs whose corpus.yaml takes these file extensions as documents."""
    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.copytree(configs, out_dir)
    path = out_dir / "corpus.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines = [
        f"text_extensions: {json.dumps(text_extensions)}"
        if line.startswith("text_extensions:")
        else line
        for line in lines
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_dir


def bench_corpus_steps(name, raw_dir, work_dir, run_dir, configs, log_path):
    """02-06 on one raw corpus, by the commands Make runs: wall time and peak RSS of each, and the figures."""
    shutil.rmtree(work_dir, ignore_errors=True)
    shutil.copytree(Artifacts(run_dir).original_tokenizer, Artifacts(work_dir).original_tokenizer)
    row = {"corpus": name, "steps": {}}
    for step, script in SCALE_STEPS:
        extra = ["--raw-dir", raw_dir] if step == "corpus" else []
        seconds, rss = timed(script_cmd(script, work_dir, configs) + extra, log_path)
        row["steps"][step] = {"seconds": seconds, "peak_rss_mb": rss}
        log.info(f"{name}: {step} {seconds:,.1f} s, peak RSS {rss:,.0f} MB")
    art = Artifacts(work_dir)
    manifest = json.loads(art.corpus_manifest.read_text(encoding="utf-8"))
    summary = json.loads((art.reports / "analyze_summary.json").read_text(encoding="utf-8"))
    distill = json.loads((art.reports / "distill_validation.json").read_text(encoding="utf-8"))
    remap = json.loads((art.reports / "remap_report.json").read_text(encoding="utf-8"))
    row.update(
        {
            "train_mb": manifest["totals"]["train"]["bytes"] / 1e6,
            "heldout_mb": manifest["totals"]["heldout"]["bytes"] / 1e6,
            "train_documents": manifest["totals"]["train"]["documents"],
            "analyze_mb_per_s": summary["mb_per_s"],
            "distinct_pretokens": summary.get("distinct_pretokens"),
            "heldout_agreement": distill["heldout"]["pretoken_occurrence_agreement"],
            "heldout_documents_exact": distill["heldout"]["document_agreement"],
            "heldout_saving": remap.get("heldout", {}).get("saving_vs_gpt2"),
        }
    )
    return row


def bench_scaling(run_dir, cfg, log_path, configs):
    """02-06 on the real corpus and on the repeated corpora; growth exponents between the repeated sizes."""
    scale_dir = run_dir.parent / "scale"
    rows = []
    if cfg["scaling_real"]:
        raw = scale_dir / "real-raw"
        n_files, n_bytes = real_corpus(raw)
        log.info(
            f"real corpus: {n_files:,} .py files of .venv site-packages, {n_bytes / 1e6:,.0f} MB"
        )
        rows.append(
            bench_corpus_steps(
                f"real: .venv site-packages .py ({n_files:,} files)",
                raw,
                scale_dir / "real",
                run_dir,
                scale_configs(configs, scale_dir / "configs-py", [".py"]),
                log_path,
            )
        )
        shutil.rmtree(scale_dir / "real")
    for size_mb in cfg["scaling_sizes_mb"]:
        raw = scale_dir / f"{size_mb:g}MB-raw"
        repeated_corpus(run_dir, raw, size_mb, cfg["seed"])
        row = bench_corpus_steps(
            f"repeated: {size_mb:g} MB",
            raw,
            scale_dir / f"{size_mb:g}MB",
            run_dir,
            configs,
            log_path,
        )
        row["repeated_mb"] = size_mb
        rows.append(row)
        shutil.rmtree(raw)
        shutil.rmtree(scale_dir / f"{size_mb:g}MB")  # a GB of corpus and ids; the figures are kept
    repeated = [r for r in rows if "repeated_mb" in r]
    for prev, row in zip(
        repeated, repeated[1:]
    ):  # t ~ size^k between neighbouring sizes; k = 1 is linear
        ratio = math.log(row["train_mb"] / prev["train_mb"])
        row["growth_exponents"] = {
            step: {
                key: math.log(s[key] / prev["steps"][step][key]) / ratio
                for key in ("seconds", "peak_rss_mb")
            }
            for step, s in row["steps"].items()
        }
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
    peak = peak_flops(name)
    x = torch.randint(
        0,
        50257,
        (batch_size, block_size),
        device="cuda",
        generator=torch.Generator("cuda").manual_seed(0),
    )
    result = {
        "available": True,
        "device": name,
        "torch": torch.__version__,
        "batch_size": batch_size,
        "block_size": block_size,
        "peak_bf16_flops": peak,
        "variants": {},
    }
    for variant in ("eager", "compiled") if compile_too else ("eager",):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(n_positions=block_size)).cuda()
        n_params = sum(
            p.numel() for p in model.parameters()
        )  # wte is tied to lm_head: counted once
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
        per_token = flops_per_token(n_params, model.config.n_layer, model.config.n_embd, block_size)
        result["params"] = n_params
        result["variants"][variant] = {
            "tokens_per_s": tokens_per_s,
            "seconds_per_step": median(times),
            "steps_timed": steps,
            "warmup_seconds": time.perf_counter() - t_start - sum(times),
            "final_loss": loss.item(),
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
            "mfu": per_token * tokens_per_s / peak if peak else None,
        }
        log.info(
            f"GPU {variant}: {tokens_per_s:,.0f} tokens/s"
            + (f", MFU {100 * result['variants'][variant]['mfu']:.1f}%" if peak else "")
        )
        del model, opt, forward
        torch.cuda.empty_cache()
    return result


def machine_info():
    import tokenizers
    import torch

    return {
        "cpus": os.cpu_count(),
        "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "tokenizers": tokenizers.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def machine_line(m):
    return (
        f"{m['cpus']} CPU cores, {m['memory_gb']:.0f} GiB"
        + (f", {m['gpu']}" if m.get("gpu") else "")
        + f", {m['platform']}, Python {m['python']}, torch {m['torch']}, tokenizers {m['tokenizers']}"
    )


# -----------------------------------------------------------------------------
# the report


def scaling_md(rows, f):
    """The scaling table: wall time and peak RSS of 02-06 per corpus, and the growth exponents."""
    if not rows:
        return []
    steps = [step for step, _ in SCALE_STEPS]
    lines = [
        "## 02-06 at scale",
        "",
        "Each corpus through the scripts Make runs (default profile), one run each; wall seconds / peak RSS MB. "
        "The real corpus is the .py files of this install's .venv site-packages; the repeated ones are the default "
        "train documents repeated and shuffled, each copy headed `# copy k` (so 02 keeps them).",
        "",
        "| corpus | train MB | distinct pre-tokens | "
        + " | ".join(steps)
        + " | 03 MB/s | held-out agreement | exact docs | held-out saving |",
        "|---|---:|---:|" + "---:|" * len(steps) + "---:|---:|---:|---:|",
    ]
    for row in rows:
        cells = [
            f"{f(row['steps'][s]['seconds'], 0)} s / {f(row['steps'][s]['peak_rss_mb'], 0)}"
            for s in steps
        ]
        saving = row.get("heldout_saving")
        lines.append(
            f"| {row['corpus']} | {f(row['train_mb'], 0)} | {f(row.get('distinct_pretokens'), 0)} | "
            + " | ".join(cells)
            + f" | {f(row['analyze_mb_per_s'])} | {100 * row['heldout_agreement']:.4f}% | "
            f"{100 * row['heldout_documents_exact']:.1f}% | {f(100 * saving, 1) + '%' if saving is not None else '—'} |"
        )
    growth = [r for r in rows if "growth_exponents" in r]
    if growth:
        lines += [
            "",
            "Growth exponent k (time or memory ~ size^k, from the repeated corpus before; 1 = linear):",
            "",
            "| corpus | " + " | ".join(f"{s} time / RSS" for s in steps) + " |",
            "|---|" + "---:|" * len(steps),
        ]
        for row in growth:
            g = row["growth_exponents"]
            lines.append(
                f"| {row['corpus']} | "
                + " | ".join(f"{f(g[s]['seconds'])} / {f(g[s]['peak_rss_mb'])}" for s in steps)
                + " |"
            )
    return lines + [""]


def pipeline_md(r):
    f = lambda x, d=2: "—" if x is None else f"{x:,.{d}f}"
    lines = []
    lines += [
        f"Throughput figures are the median of {r['config']['repeats']} alternated runs; step times the "
        "median of their runs.",
        "",
        "## The pipeline on the default corpus (PROFILE=bench: a tiny random GPT-2 for 07-08)",
        "",
        "| step | wall s (median) | runs | peak RSS MB |",
        "|---|---:|---:|---:|",
    ]
    for step, s in r["pipeline"].items():
        lines.append(
            f"| {step} | {f(s['seconds'], 1)} | {len(s['runs'])} | {f(s['peak_rss_mb'], 0)} |"
        )
    t = r["pipeline"]["train"]
    lines += [
        "",
        f"08 train (tiny random model, {t['device']}, {t['processes']} process): {f(t['tokens_per_s'], 0)} "
        f"tokens/s, {f(t['bytes_per_s'], 0)} bytes/s over {t['steps']:,} steps.",
        "",
    ]
    n = r["noop_make"]
    lines += [
        "## No-op make",
        "",
        f"`make all` with everything up to date: **{f(n['seconds'], 3)} s** (median of {len(n['runs'])}); "
        f"`make -n all` would run {len(n['commands_it_would_run'])} commands"
        + (
            ": " + "; ".join(n["commands_it_would_run"][:3])
            if n["commands_it_would_run"]
            else " (no Python process)"
        )
        + ".",
        "",
    ]
    return lines


def analyze_md(r):
    f = lambda x, d=2: "—" if x is None else f"{x:,.{d}f}"
    lines = []
    a = r["analyze"]
    lines += [
        "## 03 analyze beside the reference tokenizers",
        "",
        f"The train split, {a['bytes']:,} bytes in {a['documents']:,} documents, all cores.",
        "",
        "| | MB/s | vs HF encode_batch |",
        "|---|---:|---:|",
        f"| 03 analyze (encode loop, as it reports) | {f(a['analyze_mb_per_s'])} | {f(a['analyze_vs_hf'])}× |",
        f"| 03 analyze (whole process, start-up included) | {f(a['analyze_wall_mb_per_s'])} | |",
        f"| tokenizers GPT-2 BPE `encode_batch` | {f(a['hf_encode_batch_mb_per_s'])} | 1.00× |",
        f"| tiktoken from the same files | {f(a['tiktoken_mb_per_s'])} | "
        + (
            f"{f(a['tiktoken_mb_per_s'] / a['hf_encode_batch_mb_per_s'])}× |"
            if a["tiktoken_installed"]
            else "not installed |"
        ),
        "",
        f"Peak RSS of 03 on it: {f(a['analyze_peak_rss_mb'], 0)} MB.",
        "",
    ]
    return lines


def gpu_md(r):
    f = lambda x, d=2: "—" if x is None else f"{x:,.{d}f}"
    lines = []
    g = r["gpu"]
    lines += ["## GPU", ""]
    if not g["available"]:
        lines.append(
            "No GPU on this machine: skipped. Where one is present this section gives a GPT-2-small-shaped "
            "model's training tokens/s, peak memory and model FLOPs utilisation (bf16), eager and compiled."
        )
    else:
        lines += [
            f"{g['device']}, torch {g['torch']}: a random GPT-2 small ({g['params']:,} parameters), batch "
            f"{g['batch_size']} × {g['block_size']} tokens, bf16 autocast, fused AdamW; the median of the "
            "timed steps after 3 warm-up steps. MFU counts 6 × parameters + 12 × layers × width × context "
            f"FLOPs per token against {f(g['peak_bf16_flops'] / 1e12, 0) if g['peak_bf16_flops'] else 'an unknown'} "
            "TFLOP/s dense bf16.",
            "",
            "| variant | tokens/s | s/step | MFU | peak memory GiB | warm-up s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, v in g["variants"].items():
            lines.append(
                f"| {'eager (as 08 trains)' if name == 'eager' else 'torch.compile'} | "
                f"{f(v['tokens_per_s'], 0)} | {f(v['seconds_per_step'], 3)} | "
                f"{f(100 * v['mfu'], 1) + '%' if v['mfu'] else '—'} | {f(v['peak_memory_gb'], 1)} | "
                f"{f(v['warmup_seconds'], 1)} |"
            )
    return lines


def report_md(r):
    f = lambda x, d=2: "—" if x is None else f"{x:,.{d}f}"
    measured = r["measured"]
    lines = ["# What a run costs", ""]
    by_machine = {}  # sections grouped by the (date, machine) they were measured on
    for section in [s for s in SECTIONS if s in measured]:
        key = (measured[section]["date"], machine_line(measured[section]["machine"]))
        by_machine.setdefault(key, []).append(section)
    titles = {
        "pipeline": "the pipeline and no-op make",
        "analyze": "03 beside the reference tokenizers",
        "scaling": "02-06 at scale",
        "gpu": "GPU",
    }
    for (date, machine), sections in by_machine.items():
        which = "" if len(by_machine) == 1 else " (" + "; ".join(titles[s] for s in sections) + ")"
        lines.append(f"Measured{which} {date} on {machine}.")
    lines.append("")
    lines += pipeline_md(r) if "pipeline" in r else []
    lines += analyze_md(r) if "analyze" in r else []
    lines += scaling_md(r.get("scaling") or [], f)
    lines += gpu_md(r) if "gpu" in r else []
    return "\n".join(lines) + "\n"


# -----------------------------------------------------------------------------


def main():
    args = parse_args()
    art = Artifacts(args.artifacts)
    cfg = load_config(
        STEP,
        args.profile,
        args.configs,
        {
            "repeats": args.repeats,
            "step_repeats": args.step_repeats,
            "scaling_sizes_mb": args.scaling_sizes_mb,
            "scaling_real": args.scaling_real,
        },
    )
    bench_dir = art.root.resolve() / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(STEP, art.log_file(STEP))
    configs = Path(args.configs or ROOT / "configs").resolve()
    run_dir, log_path = bench_dir / "pipeline", bench_dir / "commands.log"
    t_start = time.perf_counter()

    # Sections not re-run come from the last bench.json, with the date and machine they were measured on.
    # (A section never measured is left out of the report.)
    previous = {"measured": {}}
    if set(args.only) != set(SECTIONS) and (bench_dir / "bench.json").exists():
        previous = json.loads((bench_dir / "bench.json").read_text(encoding="utf-8"))
        previous.setdefault("measured", {})
    needs_corpus = {"analyze", "scaling"} & set(args.only)
    if (
        "pipeline" not in args.only
        and needs_corpus
        and not (
            Artifacts(run_dir).train_docs.exists() and Artifacts(run_dir).model_source.exists()
        )
    ):
        die(
            f"--only {' '.join(args.only)} uses the corpus of the pipeline section in {run_dir}, which is missing; "
            "add pipeline to --only"
        )
    here = {"date": time.strftime("%Y-%m-%d"), "machine": machine_info()}
    result = {"config": cfg, "measured": {}}
    for section in SECTIONS:
        if section in args.only:
            result["measured"][section] = here
        elif section in previous["measured"]:
            result["measured"][section] = previous["measured"][section]
            keys = {
                "pipeline": ("pipeline", "noop_make"),
                "analyze": ("analyze",),
                "scaling": ("scaling",),
                "gpu": ("gpu",),
            }[section]
            result.update({k: previous[k] for k in keys})

    # --- 1-2: the pipeline, and a no-op make
    if "pipeline" in args.only:
        log.info("1. the pipeline through make (PROFILE=bench)")
        result["pipeline"] = bench_pipeline(run_dir, cfg["step_repeats"], log_path, configs)
        result["noop_make"] = bench_noop_make(run_dir, cfg["repeats"])
        log.info(
            f"2. no-op make all: {result['noop_make']['seconds']:.3f} s, "
            f"{len(result['noop_make']['commands_it_would_run'])} commands"
        )

    # --- 3: analyze beside the reference tokenizers
    if "analyze" in args.only:
        log.info("3. 03 analyze beside tokenizers encode_batch and tiktoken")
        result["analyze"] = bench_analyze(run_dir, cfg["repeats"], log_path, configs)
        a = result["analyze"]
        log.info(
            f"analyze {a['analyze_mb_per_s']:.2f} MB/s, HF encode_batch {a['hf_encode_batch_mb_per_s']:.2f} "
            f"MB/s, tiktoken {a['tiktoken_mb_per_s'] or 0:.2f} MB/s"
        )

    # --- 4: scaling
    if "scaling" in args.only:
        log.info("4. 02-06 at scale: the real corpus and the repeated ones")
        result["scaling"] = bench_scaling(run_dir, cfg, log_path, configs)

    # --- 5: GPU
    if "gpu" in args.only:
        log.info("5. GPT-2 small training steps on the GPU")
        result["gpu"] = bench_gpu(
            cfg["gpu_steps"], cfg["gpu_batch_size"], cfg["gpu_block_size"], cfg["gpu_compile"]
        )
    result["seconds"] = time.perf_counter() - t_start

    write_json(bench_dir / "bench.json", result)
    write_text(bench_dir / "bench.md", report_md(result))
    save_config(cfg, bench_dir / f"{STEP}.config.yaml", STEP, args.profile)
    log.info(f"wrote {bench_dir / 'bench.md'} ({result['seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
