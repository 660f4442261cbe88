"""
09 report: compare GPT-2 unchanged, GPT-2 fine-tuned without IVR, and GPT-2 + IVR fine-tuned.

    .venv/bin/python scripts/09_report.py [--ivr-dir DIR] [--baseline-dir DIR]
    make artifacts/analysis/reports/ivr_report.md        (alias: make report; runs `make train` and `make baseline`)

Reads the summary.json and metrics.jsonl of the IVR run (artifacts/training/) and of the baseline
(artifacts/training/baseline/: the same 08_train.py and config with GPT-2's own tokenizer and embeddings,
the same byte budget), and 07's init_comparison.json (one row per init strategy, before any training).
"GPT-2 unchanged" is the baseline's step-0 evaluation: the untouched model with its own tokenizer, scored by
the same function on the same held-out text. In the mini profile the model is 10_pretrain's stand-in, and the
report also says what it was pretrained on and how it compares with its random init. Writes to
artifacts/analysis/reports/:
  ivr_report.md            the table (held-out bits per byte, tokens per byte, training bytes and bytes/s,
                           peak memory, steps), the setup, and the plot
  ivr_bits_per_byte.png    held-out bits per byte against training bytes seen, baseline and IVR
  ivr_report.json          the table as data
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import parse_step_args, save_config, step_config
from lib.files import atomic_path, require, write_json, write_text
from lib.log import die, log, setup_logging
from lib.paths import Artifacts

STEP = "09_report"
PLOT = "ivr_bits_per_byte.png"
# 07's comparison rows that are no init strategy (the model as is, and the old rows kept)
REFERENCE_ROWS = ("gpt2 as is (original tokenizer)", "old rows kept (no init)")


FLAGS = [  # the step's own flags (the config keys' flags come from lib/schema.py)
    ("--ivr-dir", {"help": "run directory of GPT-2 + IVR (default: <artifacts>/training)"}),
    (
        "--baseline-dir",
        {"help": "run directory of the baseline (default: <artifacts>/training/baseline)"},
    ),
]


# -----------------------------------------------------------------------------
# inputs


def read_run(run_dir, make_target):
    summary_path = require(Path(run_dir) / "summary.json", make_target)
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        evals = [
            row
            for row in map(
                json.loads, Path(summary["metrics"]).read_text(encoding="utf-8").splitlines()
            )
            if "eval_bits_per_byte" in row
        ]
    except (json.JSONDecodeError, KeyError, OSError) as e:
        die(f"{summary_path}: unreadable run summary or metrics ({e}); re-run `make {make_target}`")
    return summary, evals


def check_comparable(ivr, base, tolerance):
    """The two runs must be scored on the same held-out text with the same block size and budget."""
    for key in ("documents", "bytes"):
        if ivr["heldout"][key] != base["heldout"][key]:
            die(
                f"the IVR run and the baseline were evaluated on different held-out text ({key}: "
                f"{ivr['heldout'][key]:,} vs {base['heldout'][key]:,}); re-run both with the same configs"
            )
    if ivr["block_size"] != base["block_size"]:
        die(
            f"the IVR run has block_size {ivr['block_size']} and the baseline {base['block_size']}; re-run both with one config"
        )
    gap = abs(ivr["bytes_seen"] - base["bytes_seen"]) / max(base["bytes_seen"], 1)
    if gap > tolerance:
        log.warning(
            f"warning: training bytes differ by {gap:.1%} (IVR {ivr['bytes_seen']:,}, baseline "
            f"{base['bytes_seen']:,}): set max_train_bytes in configs/train.yaml for a same-budget comparison"
        )
    return gap


# -----------------------------------------------------------------------------
# the report


def fmt(value, spec, dash="–"):
    return dash if value is None else format(value, spec)


def plot(path, ivr_evals, base_evals, unchanged_bpb, model_label, cfg):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for evals, label, style in (
        (base_evals, f"{model_label} fine-tuned, original tokenizer (baseline)", "o-"),
        (ivr_evals, f"{model_label} + IVR fine-tuned", "s-"),
    ):
        ax.plot(
            [r["bytes_seen"] / 1e6 for r in evals],
            [r["eval_bits_per_byte"] for r in evals],
            style,
            ms=3.5,
            label=label,
        )
    ax.axhline(unchanged_bpb, color="grey", ls="--", lw=1, label=f"{model_label} unchanged")
    if cfg["plot_log_x"]:
        ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("training bytes seen (MB of UTF-8 train text)")
    ax.set_ylabel("held-out bits per byte")
    ax.set_title("Held-out bits per byte during fine-tuning")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=cfg["plot_dpi"], format="png")
    plt.close(fig)


def trained_row(s, name):
    return {
        "model": name,
        "bits_per_byte": s["heldout"]["bits_per_byte"],
        "tokens_per_byte": s["heldout"]["tokens_per_byte"],
        "training_bytes": s["bytes_seen"],
        "training_bytes_per_s": s["bytes_per_s"],
        "training_tokens_per_s": s["tokens_per_s"],
        "peak_memory_mb": s["peak_memory_mb"],
        "steps": s["steps"],
    }


def untrained_row(name, bits_per_byte, tokens_per_byte):
    return {
        "model": name,
        "bits_per_byte": bits_per_byte,
        "tokens_per_byte": tokens_per_byte,
        "training_bytes": 0,
        "training_bytes_per_s": None,
        "training_tokens_per_s": None,
        "peak_memory_mb": None,
        "steps": 0,
    }


def equal_compute_row(base, base_evals, ivr, name):
    """The baseline at the IVR run's compute: its last evaluation at or before the IVR run's step count.
    Same model, block size and tokens per step, so equal steps are equal training FLOPs; or None when
    the baseline has no evaluation there."""
    if base.get("tokens_per_step") != ivr.get("tokens_per_step"):
        return None
    at = [e for e in base_evals if 0 < e["step"] <= ivr["steps"]]
    if not at:
        return None
    e = max(at, key=lambda e: e["step"])
    return {
        **untrained_row(name, e["eval_bits_per_byte"], e["eval_tokens_per_byte"]),
        "training_bytes": e["bytes_seen"],
        "steps": e["step"],
    }


def step0_row(s, name):
    return untrained_row(
        name, s["heldout"]["initial_bits_per_byte"], s["heldout"]["initial_tokens_per_byte"]
    )


def setup_rows(base, ivr):
    """The setup table's rows: baseline against IVR."""
    lines = []
    for label, key in (
        ("model", "model_name"),
        ("tokenizer", "tokenizer"),
        ("embeddings", "embeddings"),
        ("device x processes", None),
        ("precision", "precision"),
        ("tokens per step", "tokens_per_step"),
        ("bytes per step", "bytes_per_step"),
        ("train tokens/byte", None),
        ("epochs", "epochs"),
        ("training seconds", "train_seconds"),
        ("seconds per step", "seconds_per_step"),
        ("training tokens/s", "tokens_per_s"),
        ("resumed from steps", "resumed_from_steps"),
    ):
        cells = []
        for s in (base, ivr):
            if label == "device x processes":
                cells.append(f"{s['device']} x {s['processes']}")
            elif label == "train tokens/byte":
                cells.append(f"{s['train']['tokens_per_byte']:.4f}")
            elif isinstance(s[key], float):
                cells.append(f"{s[key]:,.0f}" if s[key] >= 100 else f"{s[key]:.3f}")
            elif isinstance(s[key], int):
                cells.append(f"{s[key]:,}")
            else:
                cells.append(f"`{s[key]}`" if s[key] else "–")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return lines


SMOKE_BANNER = [
    "> **SMOKE RUN.** The model is a *tiny randomly initialised* GPT-2 (01's smoke profile), not GPT-2,",
    "> trained for a few hundred kilobytes. These numbers only show that the machinery works; they say",
    "> nothing about GPT-2 or about IVR's effect on it. In particular, an untrained random model pays about",
    "> log2(50,257) = 15.6 bits for every token, so a tokenizer with fewer tokens per byte gets fewer bits per",
    "> byte for that reason alone.",
    "",
]
MINI_BANNER = [
    "> **MINI STAND-IN, NOT GPT-2.** The model is the kit's small GPT-2 (10_pretrain: GPT-2's 50,257 ids and BPE,",
    "> {shape}, {params:,} parameters) pretrained from scratch on {mb:.1f} MB of general text that is not the domain.",
    "> Unlike the smoke model it has learned GPT-2's tokens, so giving ids away and re-initialising rows costs it",
    "> something, as it would cost GPT-2. It is far smaller and far less trained than GPT-2: the figures show",
    "> IVR's mechanics and the direction of its trade-off, not the size of its effect on GPT-2 itself.",
    "",
]


def read_comparison(path, ivr):
    """07's init_comparison.json, or None when 07 compared nothing; marked when it was scored on other text."""
    if not path.exists():
        return None
    comparison = read_json(path, "align")
    if not comparison.get("strategies"):
        return None
    comparison["same_text"] = (
        comparison.get("bytes") == ivr["heldout"]["bytes"]
        and comparison.get("block_size") == ivr["block_size"]
    )
    return comparison


def read_json(path, make_target):
    try:
        return json.loads(require(path, make_target).read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        die(f"{path}: not valid JSON; re-run `make {make_target}`")


def read_pretrain(art):
    """10_pretrain's summary, and how many of its general-text files are also files of the domain corpus."""
    summary = read_json(art.pretrain_run / "summary.json", "pretrain PROFILE=mini")
    general = read_json(art.general_corpus / "manifest.json", "pretrain PROFILE=mini")
    domain = read_json(art.corpus_manifest, "corpus")
    domain_hashes = {f.get("sha256") for f in domain.get("files", [])}
    summary["files_shared_with_domain"] = sum(
        f["sha256"] in domain_hashes for f in general["files"]
    )
    summary["general_files"] = len(general["files"])
    return summary


def strategy_rows(comparison, model):
    """One untrained row per init strategy of 07 (and the random model of the same shape, when measured)."""
    if not comparison:
        return []
    note = "" if comparison["same_text"] else " (07's held-out slice)"
    rows = []
    for name, res in sorted(
        comparison["strategies"].items(), key=lambda kv: kv[1]["bits_per_byte"]
    ):
        if name not in REFERENCE_ROWS:
            rows.append(
                untrained_row(
                    f"{model} + IVR before fine-tuning, init {name}{note}",
                    res["bits_per_byte"],
                    res["tokens_per_byte"],
                )
            )
    random_model = comparison.get("references", {}).get("random_init_same_shape")
    if random_model:
        rows.append(
            untrained_row(
                f"random init of the same shape, original tokenizer{note}",
                random_model["bits_per_byte"],
                random_model["tokens_per_byte"],
            )
        )
    return rows


def short_run_md(comparison):
    """Each strategy before fine-tuning and after 07's short run, and both rankings."""
    lines = []
    short = comparison.get("after_short_finetune")
    if short:
        lines += [
            "",
            "| init strategy | before fine-tuning | after the short run (07's ranking) |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {n} | {comparison['strategies'][n]['bits_per_byte']:.4f} | {short[n]['bits_per_byte']:.4f} |"
            for n in comparison.get("ranking", short)
        ]
        lines.append("")
        lines.append(
            f"- Ranked before fine-tuning: {', '.join(comparison.get('untrained_ranking', []))}; after the short "
            f"run: {', '.join(comparison.get('ranking', []))}."
        )
    return lines


def general_md(comparison):
    """The cost before fine-tuning on the domain and on general text, against the model as is."""
    lines = []
    general = (comparison.get("general_text") or {}).get("strategies")
    if general:
        as_is = general["gpt2 as is (original tokenizer)"]["bits_per_byte"]
        domain_as_is = comparison["strategies"]["gpt2 as is (original tokenizer)"]["bits_per_byte"]
        lines += [
            "",
            "Before fine-tuning, against the model as is (positive: IVR costs bits), on the domain's held-out "
            "text and on general text that is not the domain (it still uses the old tokens):",
            "",
            "| init strategy | domain | gap | general text | gap |",
            "|---|---:|---:|---:|---:|",
        ]
        for n in comparison.get("ranking") or sorted(general):
            if n in REFERENCE_ROWS or n not in general:
                continue
            d, g = comparison["strategies"][n]["bits_per_byte"], general[n]["bits_per_byte"]
            lines.append(
                f"| {n} | {d:.4f} | {d - domain_as_is:+.4f} | {g:.4f} | {g - as_is:+.4f} |"
            )
        lines.append(f"| (as is) | {domain_as_is:.4f} | | {as_is:.4f} | |")
    return lines


def distillation_md(comparison):
    """What token distillation did: snippets, new tokens covered, the objective by epoch."""
    lines = []
    distilled = comparison.get("token_distillation")
    if distilled:
        lines.append(
            f"- Token distillation: {distilled['snippets']:,} train snippets for "
            f"{distilled['new_tokens_with_snippets']:,} new tokens, {distilled['seconds']} s; objective by epoch: "
            + "; ".join(
                f"{k} " + " -> ".join(f"{x:.4g}" for x in v["objective_by_epoch"])
                for k, v in distilled["runs"].items()
            )
            + "."
        )
    return lines


def init_md(comparison, stand_in):
    """Which init strategy won 07's comparison, and by how much."""
    if not comparison:
        return ""
    ranked = sorted(
        (r["bits_per_byte"], n)
        for n, r in comparison["strategies"].items()
        if n not in REFERENCE_ROWS
    )
    lines = ["", "## Init strategies (07, before any training)", ""]
    if len(ranked) > 1:
        (b0, n0), (b1, n1) = ranked[0], ranked[1]
        lines.append(
            f"- **{n0}** won: {b0:.4f} bits/byte, {b1 - b0:.4f} below the runner-up {n1} ({b1:.4f}) and "
            f"{ranked[-1][0] - b0:.4f} below the last, {ranked[-1][1]} ({ranked[-1][0]:.4f})."
        )
    lines.append(
        f"- 07 put **{comparison.get('chosen')}** into final_wte.pt (configured: {comparison.get('configured')})."
    )
    lines += short_run_md(comparison) + general_md(comparison) + distillation_md(comparison)
    kept = comparison["strategies"].get("old rows kept (no init)")
    if kept:
        lines.append(
            f"- Old rows kept (each given-away id keeps its old string's row): {kept['bits_per_byte']:.4f} bits/byte."
        )
    if stand_in == "smoke":
        lines.append("- The model is random: this ranking says nothing about GPT-2.")
    if not comparison["same_text"]:
        lines.append(
            f"- 07 scored {comparison.get('bytes', 0):,} held-out bytes in windows of {comparison.get('block_size')}; "
            "08 scores another slice, so compare these rows with each other, not with the fine-tuned rows."
        )
    return "\n".join(lines) + "\n"


def mini_banner(pretrain):
    shape = pretrain["shape"]
    return [
        line.format(
            shape=f"{shape['n_layer']} layers x {shape['n_embd']} wide",
            params=pretrain["parameters"],
            mb=pretrain["bytes_seen"] / 1e6,
        )
        for line in MINI_BANNER
    ]


def stand_in_md(pretrain, comparison):
    """What 10_pretrain made: its general text, its held-out curve, and the random model it started from."""
    random_model = (comparison or {}).get("references", {}).get("random_init_same_shape")
    held = pretrain["heldout"]
    lines = [
        "",
        "## The mini stand-in (10_pretrain)",
        "",
        f"- Pretrained for {pretrain['steps']:,} steps on {pretrain['bytes_seen']:,} bytes of general text "
        f"({pretrain['general_files']:,} files; {pretrain['files_shared_with_domain']} of them are also files of the "
        f"domain corpus), {pretrain['train_seconds'] / 60:.1f} min of training at {pretrain['tokens_per_s']:,.0f} tokens/s.",
        f"- General held-out text: {fmt(held['initial_bits_per_byte'], '.4f')} bits/byte at its random init, "
        f"{held['bits_per_byte']:.4f} after pretraining.",
    ]
    if random_model:
        lines.append(
            f"- Domain held-out text (07's slice): the random init of the same shape {random_model['bits_per_byte']:.4f} "
            f"bits/byte; the pretrained mini, as is, {comparison['strategies']['gpt2 as is (original tokenizer)']['bits_per_byte']:.4f}."
        )
    lines.append(
        f"- Loss curve: `{Path(pretrain['metrics']).parent / 'loss_curve.png'}`; model: `{pretrain['model_dir']}`."
    )
    return "\n".join(lines) + "\n"


def report_md(rows, ivr, base, gap, banner):
    """The markdown of ivr_report.md: the table, the comparison, how the numbers are made, the setup."""
    tuned, ivr_row = rows[1], rows[2]
    equal = next((r for r in rows if "(equal compute)" in r["model"]), None)
    lines = ["# IVR report: held-out bits per byte", "", *banner]
    lines += [
        "| model | held-out bits/byte | tokens/byte | training bytes | training bytes/s | peak memory (MB) | steps |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {fmt(r['bits_per_byte'], '.4f')} | {fmt(r['tokens_per_byte'], '.4f')} | "
            f"{r['training_bytes']:,} | {fmt(r['training_bytes_per_s'], ',.0f')} | {fmt(r['peak_memory_mb'], ',.0f')} | {r['steps']:,} |"
        )
    d_bpb = ivr_row["bits_per_byte"] - tuned["bits_per_byte"]
    lines += [
        "",
        f"- IVR vs the baseline, same byte budget: {d_bpb:+.4f} bits/byte ({d_bpb / tuned['bits_per_byte']:+.1%}); "
        f"{ivr_row['tokens_per_byte'] / tuned['tokens_per_byte'] - 1:+.1%} tokens per byte; "
        f"{ivr_row['training_bytes_per_s'] / tuned['training_bytes_per_s'] - 1:+.1%} training bytes/s; "
        f"{ivr_row['steps']:,} vs {tuned['steps']:,} steps.",
        f"- Training bytes of the two runs differ by {gap:.1%} (the budget is max_train_bytes, rounded up to whole steps).",
        (
            f"- At equal compute (the same steps, tokens per step and model, so the same training FLOPs): IVR "
            f"{ivr_row['bits_per_byte'] - equal['bits_per_byte']:+.4f} bits/byte against the baseline's evaluation "
            f"at step {equal['steps']:,} ({equal['bits_per_byte']:.4f})."
            if equal
            else "- At equal compute: the baseline has no evaluation at or before the IVR run's step count."
        ),
        "",
        f"![held-out bits per byte against training bytes seen]({PLOT})",
        "",
        "## How these numbers are made",
        "",
        "- **Held-out bits per byte**: the model's total negative log-likelihood, in bits, of every token of the held-out "
        "documents, divided by their UTF-8 bytes (`lib/evaluate.py`; the `<|endoftext|>` separators are context, never "
        "scored). It does not depend on how the text is cut into tokens, so it compares tokenizers fairly. Every row is "
        f"scored by that same function on the same {ivr['heldout']['documents']:,} held-out documents "
        f"({ivr['heldout']['bytes']:,} bytes), in windows of {ivr['block_size']:,} tokens.",
        "- **Tokens/byte**: held-out tokens per byte under the row's tokenizer (lower = shorter sequences).",
        "- **Training bytes**: optimizer steps x tokens per step x the train split's bytes per token under the run's "
        "tokenizer. Both runs get the same byte budget (`max_train_bytes`), so IVR, with fewer tokens per byte, takes fewer steps.",
        "- **Training bytes/s**: training bytes / time spent in training steps (evaluation and checkpoints excluded).",
        f"- **Peak memory**: {ivr['peak_memory_kind']}.",
        "- **Unchanged** is the baseline's evaluation at step 0; **before fine-tuning** is the IVR run's (with the "
        "init strategy 07 chose); the rows per init strategy come from 07's comparison (`init_comparison.json`).",
        "",
        "## Setup",
        "",
        "| | baseline | IVR |",
        "|---|---|---|",
    ]
    lines += setup_rows(base, ivr)
    lines += [
        "",
        f"Sources: `{ivr['metrics']}`, `{base['metrics']}` and the summary.json beside each.",
        "",
    ]
    return "\n".join(lines)


def main():
    args = parse_step_args("report", __doc__, FLAGS)
    art = Artifacts(args.artifacts)
    cfg = step_config("report", args)
    setup_logging(STEP, art.log_file(STEP))

    # 1. the two runs, checked comparable
    ivr, ivr_evals = read_run(Path(args.ivr_dir) if args.ivr_dir else art.training, "train")
    base, base_evals = read_run(
        Path(args.baseline_dir) if args.baseline_dir else art.training / "baseline", "baseline"
    )
    gap = check_comparable(ivr, base, cfg["bytes_tolerance"])
    smoke = ivr["smoke_tiny_random_model"] or base["smoke_tiny_random_model"]
    stand_in = ivr.get("stand_in") or ("smoke" if smoke else None)
    model = {"smoke": "tiny random GPT-2", "mini": "mini stand-in"}.get(stand_in, "GPT-2")
    comparison = read_comparison(art.embeddings / "init_comparison.json", ivr)
    pretrain = read_pretrain(art) if stand_in == "mini" else None

    # 2. the rows: unchanged, fine-tuned with and without IVR, and IVR before fine-tuning per init strategy
    rows = [
        step0_row(base, f"{model} unchanged"),
        trained_row(base, f"{model} fine-tuned without IVR (original tokenizer)"),
        trained_row(ivr, f"{model} + IVR fine-tuned"),
        step0_row(ivr, f"{model} + IVR before fine-tuning (for reference)"),
    ]
    equal = equal_compute_row(
        base,
        base_evals,
        ivr,
        f"{model} fine-tuned without IVR, at the IVR run's steps (equal compute)",
    )
    rows += [equal] if equal else []
    rows += strategy_rows(comparison, model)

    # 3. the plot, the markdown, the json
    reports = art.reports
    reports.mkdir(parents=True, exist_ok=True)
    plot(reports / PLOT, ivr_evals, base_evals, rows[0]["bits_per_byte"], model, cfg)
    banner = SMOKE_BANNER if stand_in == "smoke" else mini_banner(pretrain) if pretrain else []
    md = (
        report_md(rows, ivr, base, gap, banner)
        + init_md(comparison, stand_in)
        + (stand_in_md(pretrain, comparison) if pretrain else "")
    )
    write_text(reports / "ivr_report.md", md)
    write_json(
        reports / "ivr_report.json",
        {
            "smoke_tiny_random_model": smoke,
            "stand_in": stand_in,
            "rows": rows,
            "training_bytes_gap": gap,
            "init_strategies": comparison
            and {
                k: comparison.get(k)
                for k in ("best", "chosen", "configured", "ranking", "untrained_ranking")
            },
            "pretrain": pretrain,
        },
    )
    save_config(cfg, reports / f"{STEP}.config.yaml", STEP, args.profile)
    for r in rows:
        log.info(
            f"{r['model']}: {fmt(r['bits_per_byte'], '.4f')} bits/byte, {fmt(r['tokens_per_byte'], '.4f')} tokens/byte"
        )
    log.info(f"wrote {reports / 'ivr_report.md'} and {reports / PLOT}")


if __name__ == "__main__":
    main()
