"""
11 certify: which pieces the distilled tokenizer still gets wrong that no Unigram scores can fix.

    .venv/bin/python scripts/11_certify.py [--certify-time-limit 300]
    make certify        (artifacts/analysis/reports/distill_certificates.json and .md)

Reads what 04 read (the original tokenizer, the pre-token table, configs/distill.yaml: to rebuild the
learning's examples and pair guards), the distilled tokenizer (its scores), the held-out split and the
out-of-domain text of configs/distill.yaml. Writes artifacts/analysis/reports/distill_certificates.{json,md}:
a verdict per wrong piece (certified conflict, forced tie, no conflict among neighbours, fixable, time
limit), each proved set with its exact Farkas multipliers, and the wrong occurrences by verdict. The
tokenizer never depends on this step, so `make all` leaves it out (lib/certify_pieces.py: the method).
"""

import collections
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.certify_pieces import certify_pieces, lp_fixes, unseen_wrong_pieces
from lib.config import load_config, parse_step_args, save_config, step_config
from lib.distill_report import certificates_md
from lib.exact_repair import wrong_train_pieces
from lib.examples import make_examples
from lib.files import require, sha256_file, write_json, write_text
from lib.gpt2_bpe import build_unigram, make_run_split, read_original, read_scores
from lib.greedy_repair import RepairState, index_examples
from lib.log import die, log, setup_logging
from lib.pair_guards import pair_guards
from lib.paths import Artifacts
from lib.phases import phase, phases
from lib.pretokens import read_table

STEP = "11_certify"


def read_config(args):
    """The learning's config (configs/distill.yaml, as 04 ran it) and the certification's, as one dict."""
    distill = load_config("distill", args.profile, args.configs)
    return {**distill, **step_config("certify", args)}


def rebuild_learning(art, bpe, cfg):
    """The learning's examples, index and guards under the distilled scores, as 04 left them:
    (RepairState, the examples, the distilled tokenizer)."""
    phase("reading")
    table = read_table(art)
    scores = read_scores(require(art.distilled_tokenizer / "tokenizer.json", "distill"))
    phase("run split and examples")
    split = make_run_split(bpe, cfg)
    splitter = split.stage() if split else None
    examples = make_examples(table, bpe, splitter, cfg)
    phase("lattices and Viterbi of the examples")
    index = index_examples(examples.items, bpe, scores, examples.targets)
    guards = pair_guards(bpe, splitter, examples, cfg)
    distilled = build_unigram(bpe.vocab, scores, split)
    return RepairState(examples.items, index, scores, guards, cfg), examples, distilled


def certify_train(state, examples, token_strings):
    """The wrong train pieces (heaviest first), each through the exact LP (nothing applied) and then the
    certification: the result, with each piece's occurrences."""
    phase("certify: train pieces")
    wrong = wrong_train_pieces(state, examples.in_train)
    index, items = state.index, state.examples
    todo = [
        (items[k][0], index.lats[k], index.labels[k], index.paths[k], k)
        for k in wrong[: state.cfg["certify_max_pieces"]]
    ]
    held, fixable = lp_fixes(state, todo, "exact LP of wrong train pieces")
    result = certify_pieces(state, todo, token_strings, held, "certify wrong train pieces")
    weights = {items[k][0]: items[k][2] for k in wrong}
    return {"wrong_train_pieces": len(wrong), **result, "fixable": fixable, "occurrences": weights}


def certify_unseen(art, state, bpe, distilled, token_strings):
    """The wrong held-out and out-of-domain pieces (most frequent first), checked the same way against the
    learning's examples: a certified one cannot be fixed without breaking a string the learning holds."""
    if not state.cfg["certify_unseen_max_pieces"]:
        return {}
    phase("certify: held-out and out-of-domain pieces")
    todo, counts = unseen_wrong_pieces(art, state.cfg, distilled, bpe, state.scores)
    held, fixable = lp_fixes(state, todo, "exact LP of wrong unseen pieces")
    result = certify_pieces(state, todo, token_strings, held, "certify wrong unseen pieces")
    return {"wrong_unseen_pieces": len(counts), **result, "fixable": fixable, "occurrences": counts}


def verdict_classes(part):
    """{verdict: {"pieces", "occurrences"}} of one certification result, the pieces past
    certify_max_pieces counted as 'not checked'; the fixable ones (an LP change that breaks no example)
    apart."""
    classes = collections.defaultdict(lambda: {"pieces": 0, "occurrences": 0})
    fixable = set(part.get("fixable", []))
    for piece, n in part.get("occurrences", {}).items():
        verdict = part["pieces"].get(piece, "not checked")
        if piece in fixable and verdict != "certified":
            verdict = "fixable (an LP change breaks no example)"
        classes[verdict]["pieces"] += 1
        classes[verdict]["occurrences"] += n
    return dict(sorted(classes.items()))


def write_outputs(art, cfg, profile, certificates, t_start):
    certificates["classes"] = {
        "train": verdict_classes(certificates),
        "unseen": verdict_classes(certificates.get("unseen", {})),
    }
    certificates["distilled_tokenizer_sha256"] = sha256_file(
        art.distilled_tokenizer / "tokenizer.json"
    )
    certificates["phases_seconds"] = dict(phases.seconds)
    certificates["peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    certificates["seconds"] = round(time.perf_counter() - t_start, 1)
    save_config(cfg, art.reports / f"{STEP}.config.yaml", STEP, profile)
    write_json(art.reports / "distill_certificates.json", certificates)
    write_text(art.reports / "distill_certificates.md", certificates_md(certificates))


def main():
    args = parse_step_args("certify", __doc__)
    art, cfg = Artifacts(args.artifacts), read_config(args)
    setup_logging(STEP, art.log_file(STEP))
    t_start = time.perf_counter()

    # 1. the learning as 04 left it: examples, their lattices and Viterbi outputs, the pair guards
    bpe = read_original(art.original_tokenizer)
    state, examples, distilled = rebuild_learning(art, bpe, cfg)
    wrong_after = state.index.wrong_weight()
    log.info(f"the distilled scores leave example weight {wrong_after:,} wrong")

    # 2. the wrong train pieces, then the wrong held-out and out-of-domain pieces
    certificates = certify_train(state, examples, bpe.token_strings)
    certificates["unseen"] = certify_unseen(art, state, bpe, distilled, bpe.token_strings)
    if state.index.wrong_weight() != wrong_after:
        die("certification moved a score (a bug): the certificates are not written")

    # 3. the certificates
    phase("writing")
    write_outputs(art, cfg, args.profile, certificates, t_start)
    log.info("phases: " + phases.summary())


if __name__ == "__main__":
    main()
