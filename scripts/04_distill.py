"""
04 distill: a Unigram tokenizer that reproduces GPT-2's byte-level BPE, learned from BPE's own output.

    .venv/bin/python scripts/04_distill.py [--max-rounds 10] [--no-run-split] [--train-doc-sample 2000]
    make artifacts/tokenizers/distilled_unigram/tokenizer.json        (alias: make distill)

Reads artifacts/analysis/reports/pretoken_table.parquet (every distinct train pre-token with its count and
GPT-2's ids: the labels), bpe_token_id_sequences.txt (streamed, for a sample of whole train documents),
artifacts/tokenizers/original/ (GPT-2's vocab and merges) and the held-out split. Writes
artifacts/tokenizers/distilled_unigram/ (tokenizer.json + HF files: the same 50,257 ids and strings, the
same byte-level pipeline plus the run split, a Unigram model, no merges) and
artifacts/analysis/reports/distill_validation.{md,json}: agreement on train, held-out and out-of-domain
text, mismatch classes, decode identity, tokenizers.js parity, throughput, each phase's seconds.

The method (docs/distill.md), in the order of the phases:
  1. scores start from merge trees (lib/gpt2_bpe.merge_tree_scores);
  2. the labelled examples: train pieces, vocab strings, generated strings (lib/examples.py);
  3. greedy repair with pair guards (lib/greedy_repair.py, lib/pair_guards.py), then an exact repair,
     one LP per piece still wrong (lib/exact_repair.py);
  4. ties no score can break are cut the way BPE cuts them by a Split stage (lib/runsplit.py);
  5. validation (lib/agreement.py), including tokenizers.js (lib/parity.py).
Which remaining mismatches no scores can fix is a step of its own: `make certify` (scripts/11_certify.py).
"""

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.agreement import Compared, validate
from lib.config import parse_step_args, save_config, step_config
from lib.distill_report import report_md
from lib.exact_repair import exact_repair
from lib.examples import make_examples
from lib.files import atomic_path, require, write_json, write_text
from lib.gpt2_bpe import build_unigram, make_run_split, merge_tree_scores, read_original
from lib.greedy_repair import learn
from lib.log import log, setup_logging
from lib.pair_guards import pair_guards
from lib.parity import check as check_parity
from lib.paths import Artifacts
from lib.phases import phase, phases
from lib.pretokens import read_table, sample_documents
from lib.tokenizer import save_hf_tokenizer
from lib.tokenizer_compare import throughput

STEP = "04_distill"


# -----------------------------------------------------------------------------
# inputs: the pre-token table (03) and a deterministic sample of whole train documents


# -----------------------------------------------------------------------------
# learning and validation


def learn_scores(bpe, examples, split, cfg):
    """Closed-form init, greedy repair, exact repair: (scores, the learning's part of the report)."""
    phase("learning: greedy repair")
    scores = merge_tree_scores(bpe.vocab, bpe.merges, cfg["power"], cfg["rank_offset"])
    guards = pair_guards(bpe, split.stage() if split else None, examples, cfg)
    state, history = learn(examples, bpe, scores, cfg, guards)
    phase("learning: exact repair")
    exact = exact_repair(state, examples.in_train)
    exact.pop("held")  # the certification (11) makes its own, from the final scores
    phases.stop()
    return state.scores, {
        "repair_history": history,
        "exact_repair": exact,
        "pair_guards": guards.summary() if guards else None,
        "seconds_learning": sum(v for k, v in phases.seconds.items() if k.startswith("learning")),
    }


def write_tokenizer(art, cfg, profile, compared, texts):
    """The tokenizer (temp dir + rename), checked to give the same ids in tokenizers.js (lib/parity.py)
    and to load with AutoTokenizer, and timed as loaded: those checks for the report.
    texts: (throughput texts, parity texts)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    bench, parity = texts
    checks = {}
    with atomic_path(art.distilled_tokenizer) as tmp:
        save_hf_tokenizer(compared.distilled, tmp)
        checks["js_parity"] = (
            check_parity(tmp, parity, cfg["js_parity"], "configs/distill.yaml")
            if parity
            else {"checked": False, "why": "js_parity_max_bytes is 0"}
        )
        checks["throughput"] = throughput(
            Tokenizer.from_file(str(art.original_tokenizer / "tokenizer.json")),
            Tokenizer.from_file(str(tmp / "tokenizer.json")),
            bench,
            cfg["throughput_repeats"],
        )
        hf = AutoTokenizer.from_pretrained(str(tmp))
        probe = "def f(x):\n    return x  # ====\n\n\n<|endoftext|> 안녕 😀 ㅋㅋㅋ ————"
        same = hf(probe)["input_ids"] == compared.original.encode(probe).ids
        checks["loads_with_autotokenizer"] = same
        save_config(cfg, tmp / f"{STEP}.config.yaml", STEP, profile)
    return checks


def write_reports(art, report):
    write_json(art.reports / "distill_validation.json", report)
    write_text(art.reports / "distill_validation.md", report_md(report))


def log_summary(report):
    results = [("train", report["train"]), ("heldout", report["heldout"])]
    results += [
        (f"out of domain: {k}", a)
        for k, a in report["out_of_domain"].items()
        if a.get("pretoken_occurrences")
    ]
    for name, a in results:
        log.info(
            f"{name}: {100 * a['pretoken_occurrence_agreement']:.4f}% of {a['pretoken_occurrences']:,} pre-token "
            f"occurrences, {100 * a['distinct_pretoken_agreement']:.4f}% of {a['distinct_pretokens']:,} distinct, "
            f"{100 * a['document_agreement']:.2f}% of {a['documents']:,} documents exact"
        )
    log.info(
        f"decode identity: {report['decode_identity']['mismatches']:,} mismatches; throughput ratio "
        f"{report['throughput']['ratio']}; {report['seconds']} s, peak RSS {report['peak_rss_mb']:,.0f} MB"
    )


def main():
    args = parse_step_args("distill", __doc__)
    art, cfg = Artifacts(args.artifacts), step_config("distill", args)
    setup_logging(STEP, art.log_file(STEP))
    t_start = time.perf_counter()

    # 1. inputs: GPT-2's BPE, its labels of every train pre-token, a sample of whole train documents
    phase("reading")
    bpe = read_original(art.original_tokenizer)
    table = read_table(art)
    sample = sample_documents(
        require(art.bpe_sequences, "analyze"),
        table.meta.get("documents", 0),
        cfg["train_doc_sample"],
        cfg["doc_max_bytes"],
        bpe.id_bytes,
    )

    # 2. the run split, then the examples cut by it: exactly the pieces the tokenizer's model will see
    phase("run split")
    split = make_run_split(bpe, cfg)
    phase("labelled examples")
    examples = make_examples(table, bpe, split.stage() if split else None, cfg)

    # 3. the scores, and the tokenizer built on them
    scores, learning = learn_scores(bpe, examples, split, cfg)
    distilled = build_unigram(bpe.vocab, scores, split)
    report = {
        "run_split": bool(split),
        "run_units": len(split.units) if split else 0,
        "split_conflicts": examples.stats.pop("split_conflicts"),
        **learning,
        "examples": examples.stats,
    }
    del examples  # the validation needs none of the learning

    # 4. validation against GPT-2's BPE on train, held-out and out-of-domain text
    compared = Compared(bpe.original, distilled, split, bpe.token_strings)
    parts, bench, parity = validate(table, sample, compared, art, cfg)
    report.update(parts)

    # 5. the tokenizer (checked in tokenizers.js) and the reports
    phase("writing (and throughput)")
    report["phases_seconds"] = dict(phases.seconds)  # up to here; the log has the writing too
    report.update(write_tokenizer(art, cfg, args.profile, compared, (bench, parity)))
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    write_reports(art, report)
    log.info("phases: " + phases.summary())
    log_summary(report)


if __name__ == "__main__":
    main()
