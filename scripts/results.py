"""
The README's results table, generated from a run's artifacts (never typed by hand).

    .venv/bin/python scripts/results.py [--artifacts artifacts] [--readme README.md] [--check]
    make results                       (the default profile's artifacts; ARTIFACTS=dir for another run)

Reads what exists of: distill_validation.json (04), distill_certificates.json (11), remap_report.json
(06), init_comparison.json (07), training/summary.json and training/baseline/summary.json (08),
ivr_report.json (09) and bench/bench.json (make bench). Rewrites the block between README.md's
`<!-- results:begin -->` and `<!-- results:end -->` markers (temp file + rename), or with --check only
says whether it is current. A figure whose artifact is missing is left out, and the table says which.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.files import write_text
from lib.log import die
from lib.paths import Artifacts

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when the table is not current")
    return parser.parse_args()


def read(path):
    """The JSON at path, or None when the step has not run."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        die(f"{path}: not readable JSON ({e}); re-run the step that writes it")


def pct(x, digits=2):
    return f"{100 * x:.{digits}f}%"


def distill_rows(d, cert):
    """Rows of 04's validation and 11's certificates."""
    held, train, ood = d["heldout"], d["train"], d["out_of_domain"]
    measured = {k: a for k, a in ood.items() if a.get("pretoken_occurrences")}
    low = min(measured.items(), key=lambda kv: kv[1]["pretoken_occurrence_agreement"], default=None)
    js = d.get("js_parity") or {}
    rows = [
        (
            "04",
            "held-out pre-token occurrences = GPT-2 BPE",
            pct(held["pretoken_occurrence_agreement"], 4),
        ),
        ("04", "held-out documents exactly = GPT-2 BPE", pct(held["document_agreement"], 1)),
        (
            "04",
            "train pre-token occurrences = GPT-2 BPE",
            pct(train["pretoken_occurrence_agreement"], 4),
        ),
    ]
    if low:
        name, a = low
        rows.append(
            (
                "04",
                f"out of domain, lowest of {len(measured)} types ({name})",
                pct(a["pretoken_occurrence_agreement"], 4),
            )
        )
    if js.get("checked"):
        rows.append(
            (
                "04",
                "tokenizers.js: texts with other ids",
                f"{js['documents_differ']:,} of {js['documents']:,}",
            )
        )
    rows.append(
        ("04", "encode speed, distilled / GPT-2 BPE (Python)", f"{d['throughput']['ratio']}x")
    )
    rows.append(
        ("04", "seconds, peak RSS", f"{d['seconds']:,.0f} s, {d['peak_rss_mb'] / 1024:.1f} GB")
    )
    if cert:
        train_classes = cert["classes"]["train"]
        certified = train_classes.get("certified", {}).get("pieces", 0)
        rows.append(
            (
                "11",
                "wrong train pieces certified impossible for any scores",
                f"{certified:,} of {cert['wrong_train_pieces']:,}",
            )
        )
    return rows


def ivr_rows(remap, summary, baseline):
    """Rows of 06's saving and 08's fine-tuning."""
    rows = []
    if remap:
        end = remap["curve"][-1]
        rows.append(
            (
                "06",
                f"held-out tokens saved against GPT-2, {end['reassigned_ids']:,} ids",
                pct(end["saving_vs_gpt2"], 1),
            )
        )
        js = remap["checks"].get("js_parity") or {}
        if js.get("checked"):
            rows.append(
                (
                    "06",
                    "tokenizers.js: texts with other ids",
                    f"{js['documents_differ']:,} of {js['documents']:,}",
                )
            )
    for name, s in (("IVR", summary), ("baseline", baseline)):
        if s:
            h = s["heldout"]
            rows.append(
                (
                    "08",
                    f"{name}: held-out bits/byte before -> after {s['steps']:,} steps",
                    f"{h['initial_bits_per_byte']:.4f} -> {h['bits_per_byte']:.4f}",
                )
            )
    return rows


def profile_of(art):
    """The profile 04 ran with, from the resolved config it saved beside the tokenizer."""
    saved = art.distilled_tokenizer / "04_distill.config.yaml"
    head = saved.read_text(encoding="utf-8").split("\n", 1)[0] if saved.exists() else ""
    return head.split("profile '")[1].split("'")[0] if "profile '" in head else "?"


def table(art):
    """The markdown block: what run it comes from, then one row per figure."""
    d = read(art.reports / "distill_validation.json")
    if d is None:
        die(f"{art.reports / 'distill_validation.json'} is missing: run `make distill` first")
    cert = read(art.reports / "distill_certificates.json")
    remap = read(art.reports / "remap_report.json")
    summary = read(art.training / "summary.json")
    baseline = read(art.training / "baseline" / "summary.json")
    profile = profile_of(art)
    made = time.strftime(
        "%Y-%m-%d", time.gmtime((art.reports / "distill_validation.json").stat().st_mtime)
    )
    rows = distill_rows(d, cert) + ivr_rows(remap, summary, baseline)
    missing = [
        name
        for name, x in (
            ("make certify", cert),
            ("06", remap),
            ("08", summary),
            ("baseline", baseline),
        )
        if x is None
    ]
    smoke = bool(summary and summary.get("smoke_tiny_random_model"))
    lines = [
        BEGIN,
        f"A `{profile}`-profile run of {made}, generated by `make results`"
        + (f"; not run: {', '.join(missing)}" if missing else "")
        + (
            " (08 on the smoke profile's tiny random model: a machinery check only)"
            if smoke
            else ""
        )
        + ".",
        "",
        "| step | figure | value |",
        "|---|---|---:|",
        *(f"| {step} | {what} | {value} |" for step, what, value in rows),
        END,
    ]
    return "\n".join(lines)


def main():
    args = parse_args()
    art = Artifacts(args.artifacts)
    readme = Path(args.readme)
    if not readme.is_file():
        die(f"{readme} is missing: pass --readme the README.md to update")
    text = readme.read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        die(f"{readme}: needs one {BEGIN} and one {END} line around the results table")
    head, rest = text.split(BEGIN)
    new = head + table(art) + rest.split(END, 1)[1]
    if args.check:
        sys.exit(0 if new == text else 1)
    write_text(readme, new)
    print(f"wrote the results table of {readme} from {art.root}")


if __name__ == "__main__":
    main()
