"""
05 select: which GPT-2 ids to give away (IVR), and which frequent domain strings take them.

    .venv/bin/python scripts/05_select.py [--num-reassign 2000] [--min-frequency 10]
    make artifacts/analysis/reports/remap_rules.yaml        (alias: make select)

Reads the pre-token table of the train split (03: analysis/reports/pretoken_table.parquet, every distinct
GPT-2 pre-token with its count and BPE ids), GPT-2's tokenizer.json (01: its merges, and the table's
provenance) and the distilled Unigram (04: artifacts/tokenizers/distilled_unigram/). It never selects on
the corpus itself: everything below works on distinct pre-tokens weighted by their counts. Then it measures
the selection on text it never selects on: the held-out split (02) and out-of-domain code (measure_ood_types
of configs/distill.yaml's ood_sources, and measure_sources; lib/oodtext.py). Writes to
artifacts/analysis/reports/:
  remap_rules.yaml            what 06 and 07 read: id, its old token, its new string (you may edit it)
  replacement_candidates.csv  one row per reassigned id: old token, its train count and why it was free;
                              new string, its train count, how GPT-2 splits it, estimated token saving
  selection_log.md            the research record: config, corpus statistics, top candidates, predicted
                              tokens per byte before / after on the train split, beside the measured saving
                              on held-out and out-of-domain text (split into whitespace, against its
                              one-token-each ceiling, and the rest), what was rejected and why
  05_select.config.yaml

Pre-tokens. The distilled tokenizer cuts text with GPT-2's regex plus a run split (`#####` -> `####`,
`#`); its pre-token counts are those of the distilled pre-tokenizer applied to each distinct GPT-2
pre-token of the table, once, weighted by its count.
New strings. Unigram only ever sees one pre-token at a time, so a new string must lie inside one.
Candidates are runs of >= 2 consecutive tokens of a train pre-token's distilled segmentation (whole
pre-tokens included; whitespace runs such as newline + indentation count). They are taken greedily by
estimated worth = occurrences x (pieces - 1), re-estimated lazily after each pick on the lattice of
tokenizers' Unigram (lib/unigram.py) with the scores 06 gives: a new piece c scores V(c) + B (k(c) - 1)
(lib/ivr.new_piece_scores, shared with 06), where the old vocabulary cuts c into k(c) pieces of total
score V(c) and B = new_piece_bonus x the largest |old score|. So c replaces its old pieces wherever they
appear together, gaining B per token saved; a small B keeps every other cut of GPT-2's (see
configs/select.yaml). Three document-frequency rules make the ranking favour strings spread over the train
documents over strings frequent in a few (configs/select.yaml; by default only the weight, 0.5):
per_document_cap counts a pre-token's occurrences at most that many times per train document that holds
it; min_documents drops a candidate held by fewer train documents; document_weight multiplies its worth by
(documents / train documents) ** document_weight. A string's documents: the sum of the doc_count of the
pre-tokens it is a run of, at most the train documents (an upper bound). selection_log.md states the rule.
Ids to give away. Lowest train count first; among equals, ids the tokenizer can never emit (their string
spans pre-tokens), then under-trained ones (GPT-2 merged them into a longer token at once, so they were
hardly ever a final BPE output: ` TheNitrome`, `rawdownload`), then ids that are not their own encoding
in the distilled tokenizer, then the latest GPT-2 merges (the rarest in GPT-2's training data); or by
magikarp's under-trained score from the model's rows (give_away_order: indicator or both; lib/free_ids.py),
whose overlap with the order used selection_log.md reports whenever the weights can be read. Never:
the 256 byte tokens, <|endoftext|>, ids used more than max_old_count times, configs/select.yaml's protect.
"""

import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.candidates import (
    candidate_strings,
    distilled_pretokens,
    rank_weights,
    ranking_rule,
    segment,
)
from lib.config import load_config, parse_step_args, save_config, step_config
from lib.files import atomic_path, iter_docs, require, sha256_file
from lib.free_ids import (
    gpt2_counts,
    ids_to_give_away,
    merged_at_once,
    overlap,
    undertrained_scores,
    unused_reference,
)
from lib.greedy_selection import Greedy, Lattices, contains_index, new_piece_values
from lib.ivr import (
    kept_vocab,
    new_string_problem,
    piece_text,
    read_unigram,
    write_rules,
)
from lib.log import die, log, setup_logging
from lib.model import load_gpt2, model_source
from lib.oodtext import corpus_file_hashes, ood_documents
from lib.paths import Artifacts
from lib.phases import phase, phases
from lib.pretokens import MAKE_TARGET as TABLE_STEP
from lib.pretokens import read_pretoken_table
from lib.saving import (
    curve_points,
    measure,
    remapped_models,
    saving_curve,
    saving_sources,
    saving_table,
)
from lib.selection_log import SelectionRecord, write_selection_log
from lib.tokenizer import (
    load_gpt2_tokenizer,
    to_byte_level,
)

STEP = "05_select"
WHERE = "configs/select.yaml"


# -----------------------------------------------------------------------------
# the lattice: the estimator of what the remapped tokenizer will emit


# -----------------------------------------------------------------------------
# inputs


def settings(args):
    """The resolved config (lib/schema.py checks every key), and logging to artifacts/logs/05_select.log."""
    art = Artifacts(args.artifacts)
    cfg = step_config("select", args)
    setup_logging(STEP, art.log_file(STEP))
    return art, cfg


@dataclass
class Inputs:
    """What 05 reads: GPT-2's tokenizer.json, the pre-token table it made, and the distilled Unigram (its
    tokenizers.Tokenizer, its tokenizer.json data, its pieces and scores by id)."""

    original_json: Path
    table: object
    tokenizer: object
    data: dict
    pieces: list
    scores: list


def read_inputs(art) -> Inputs:
    """GPT-2's tokenizer.json, the pre-token table it made (checked: truncated, foreign, stale), the distilled Unigram."""
    phase("reading the pre-token table and the tokenizers")
    original_json = require(art.original_tokenizer / "tokenizer.json", "init")
    table = read_pretoken_table(
        art.pretoken_table,
        tokenizer_json=original_json,
        columns=("pretoken", "count", "doc_count", "bpe_ids"),
    )
    if not len(table):
        die(
            f"{art.pretoken_table}: no pre-tokens (an empty train split?); re-run `make corpus {TABLE_STEP}`"
        )
    tokenizer, data, pieces, scores = read_unigram(
        require(art.distilled_tokenizer / "tokenizer.json", "distill").parent
    )
    return Inputs(original_json, table, tokenizer, data, pieces, scores)


def undertrained(art, pieces, tokenizer, merged):
    """Magikarp's under-trained score of every id (lib/free_ids.undertrained_scores) from the model's
    unembedding rows and the size of its reference set, or None and why (01 recorded the weights as
    missing)."""
    phase("under-trained scores from the model's rows")
    record = json.loads(require(art.model_source, "init").read_text(encoding="utf-8"))
    if record.get("weights") == "missing":
        return None, "the model's weights are not available here (01's model_source.json)"
    model = load_gpt2(model_source(art))
    reference = unused_reference(pieces, tokenizer, merged)
    if not reference:
        return (
            None,
            "no id that training never saw as a final token, to serve as the unused reference",
        )
    scores = undertrained_scores(model.get_output_embeddings().weight, reference)
    log.info(f"under-trained scores of {len(scores):,} ids, against {len(reference):,} unused ids")
    return scores, len(reference)


def forced_strings(cfg, tokenizer, piece_to_id):
    """configs/select.yaml's force list in byte-level form, each checked (before anything is written)."""
    forced = []
    for item in cfg["force"]:
        if not isinstance(item, str):
            die(f"{WHERE}: force: {item!r} is not a string")
        c = to_byte_level(item)
        if c in forced:
            die(f"{WHERE}: force: {item!r} is listed twice")
        problem = new_string_problem(tokenizer, c, piece_to_id)
        if problem:
            die(f"{WHERE}: force: {item!r} {problem}; remove it from force")
        forced.append(c)
    return forced


# -----------------------------------------------------------------------------
# the train split as distinct distilled pre-tokens with counts


# -----------------------------------------------------------------------------
# ids to give away


# -----------------------------------------------------------------------------
# candidate strings


# -----------------------------------------------------------------------------
# greedy selection with lazy re-estimation


# -----------------------------------------------------------------------------
# measured saving on text the selection never reads


def measured_texts(art, cfg, profile, configs):
    """[(name, documents, where from)]: the held-out split, then measure_ood_types (configs/distill.yaml's
    ood_sources) and measure_sources, measure_max_bytes of each. None of it is ever selected on."""
    if not cfg["measure_max_bytes"]:
        return []
    out = [
        ("held-out", iter_docs(art.heldout_docs), f"{art.heldout_docs}")
    ]  # streamed: it can be GBs
    ood = load_config("distill", profile, configs)["ood_sources"]
    sources = []
    for kind in cfg["measure_ood_types"]:
        if kind not in ood:
            die(
                f"{WHERE}: measure_ood_types: {kind!r} is not a type of ood_sources in configs/distill.yaml "
                f"({', '.join(ood)}); remove it or add it there"
            )
        sources.append((kind, ood[kind]))
    sources.extend(cfg["measure_sources"].items())
    for name, src in ood_documents(
        dict(sources),
        cfg["measure_max_bytes"],
        even=True,
        in_corpus=corpus_file_hashes(require(art.corpus_manifest, "corpus")),
    ).items():
        out.append(
            (
                name,
                src["docs"],
                src["note"] or f"{len(src['files']):,} files from {', '.join(src['patterns'])}",
            )
        )
    return out


# -----------------------------------------------------------------------------
# outputs


COLUMNS = [
    "rank",
    "old_id",
    "old_token",
    "old_domain_count",
    "old_reason",
    "new_token",
    "new_text",
    "new_domain_count",
    "old_pieces",
    "estimated_saving",
    "cumulative_saving",
    "source",
]


def assign(picks, give_away, pieces, model, emitted):
    """Pair the picks with the ids, best with best: the rules (06, 07) and the csv rows."""
    rules, rows, cumulative = [], [], 0
    for rank, ((c, gain, source), (count, _, _, i, _, reason)) in enumerate(
        zip(picks, give_away), 1
    ):
        cumulative += gain
        old_pieces = [
            t.value for t in model.tokenize(c)
        ]  # how the distilled tokenizer (= GPT-2) cuts it
        rules.append({"id": i, "old": pieces[i], "new": c, "text": piece_text(c)})
        rows.append(
            {
                "rank": rank,
                "old_id": i,
                "old_token": pieces[i],
                "old_domain_count": count,
                "old_reason": reason,
                "new_token": c,
                "new_text": json.dumps(piece_text(c), ensure_ascii=False)[1:-1],
                "new_domain_count": emitted[c],
                "old_pieces": " ".join(old_pieces),
                "estimated_saving": gain,
                "cumulative_saving": cumulative,
                "source": source,
            }
        )
    return rules, rows


def write_rules_and_csv(art, rules, rows):
    distilled_json = art.distilled_tokenizer / "tokenizer.json"
    header = (
        f"# IVR remap rules, written by {STEP} for {distilled_json}\n"
        f"# (sha256 {sha256_file(distilled_json)[:16]}). Read by 06_remap and 07_align.\n"
        "# Each rule gives id `id` (until now the token `old`) the new string `new`, in byte-level form\n"
        "# (Ġ = space, Ċ = newline); `text` is the same string as plain text. Order: best first.\n"
        "# You may edit this file: delete rules, or give a rule another string by changing `text` and\n"
        "# deleting its `new`. Then `make remap align`. 06 and 07 refuse rules that name an id or string\n"
        "# twice, a protected id, an `old` that is not the tokenizer's, or a string that spans pre-tokens.\n"
    )
    write_rules(art.remap_rules, rules, header)
    with atomic_path(art.replacement_candidates) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)


def undertrained_summary(indicator, reference, give_away, pieces):
    """For selection_log.md: the overlap of the ids given away with the indicator's top ids, and its top.
    reference: the reference set's size, or why there is no indicator."""
    if indicator is None:
        return {"computed": False, "why": reference}
    n = len(give_away)
    top = sorted(range(len(indicator)), key=lambda i: (-indicator[i], i))[:20]
    return {
        "computed": True,
        "reference_ids": reference,
        "given_away": n,
        "overlap_with_top": overlap(give_away, indicator, n),
        "top": [(pieces[i], round(indicator[i], 4)) for i in top],
    }


def log_summary(art, r: SelectionRecord, n_forced):
    corpus, rows, table, measured = r.corpus, r.rows, r.table, r.measured
    before, n_bytes = corpus.tokens_before, max(corpus.n_bytes, 1)
    log.info(
        f"picked {len(rows):,} strings ({n_forced:,} forced); predicted on train: tokens/byte "
        f"{before / n_bytes:.4f} -> {r.tokens_after / n_bytes:.4f} ({1 - r.tokens_after / before:.1%} fewer tokens)"
    )
    log.info(f"ranking rule: {ranking_rule(r.cfg, corpus.n_docs)}")
    log.info(
        "curve: " + ", ".join(f"{n:,} ids {s:.1%}" for n, s in saving_curve(r.cfg, rows, before))
    )
    if rows:
        log.info(
            "top: " + ", ".join(f"{x['new_text']!r} {x['estimated_saving']:,}" for x in rows[:8])
        )
    for n, train, others in table if measured else ():
        log.info(
            f"saving against GPT-2 with {n:,} ids: train (predicted) {train:.1%}, "
            + ", ".join(f"{m['name']} {x:.1%}" for m, x in zip(measured, others) if x is not None)
        )
    if measured and table:
        n = table[-1][0]
        parts = [(m["name"], *saving_sources(m, n)) for m in measured if m["gpt2"]]
        log.info(
            f"where the saving comes from at {n:,} ids (on whitespace, of its ceiling; on the rest): "
            + ", ".join(
                f"{name} {space:.1%} of {ceiling:.1%}; {rest:.1%}"
                for name, space, rest, ceiling in parts
            )
        )
    log.info(
        f"wrote {art.remap_rules}, {art.replacement_candidates}, {art.selection_log} ({r.seconds:,.1f} s)"
    )
    log.info("phases: " + phases.summary())


# -----------------------------------------------------------------------------


def main():
    args = parse_step_args("select", __doc__)
    art, cfg = settings(args)
    t_start = time.perf_counter()

    # 1. inputs, and the train split as the distilled tokenizer's distinct pre-tokens and their cuts
    inputs = read_inputs(art)
    pieces, scores, tokenizer = inputs.pieces, inputs.scores, inputs.tokenizer
    piece_to_id = {p: i for i, p in enumerate(pieces)}
    forced = forced_strings(cfg, tokenizer, piece_to_id)
    corpus = distilled_pretokens(inputs.table, tokenizer, art.pretoken_table)
    segment(corpus, tokenizer.model)

    # 2. the ids to give away (least used first) and the candidate strings (runs inside a pre-token)
    old_count, merged = gpt2_counts(inputs.table), merged_at_once(inputs.original_json)
    indicator, reference = undertrained(art, pieces, tokenizer, merged)
    give_away, rejected_ids = ids_to_give_away(pieces, cfg, old_count, tokenizer, merged, indicator)
    inputs.table = None  # the table's memory, before the lattices'
    weights = rank_weights(corpus, cfg["per_document_cap"])
    cands = candidate_strings(corpus, pieces, piece_to_id, tokenizer, cfg, weights)
    cands.estimate.update({c: max(cands.estimate.get(c, 0), 1) for c in forced})

    # 3. greedy selection on the lattices of 06's scores, then the picks paired with the ids
    vocab = kept_vocab(pieces, {g[3] for g in give_away})
    strings = list(cands.estimate)
    new_scores = new_piece_values(strings, vocab, scores, cfg["new_piece_bonus"])
    index = contains_index(corpus.ptoks, strings)
    greedy = Greedy(
        Lattices(vocab, scores, strings, new_scores), corpus, index, weights, cands.spread
    )
    selection = greedy.run(forced, cands.estimate, len(give_away))
    tokens_after, emitted = greedy.predict({c for c, _, _ in selection[0]})
    rules, rows = assign(selection[0], give_away, pieces, tokenizer.model, emitted)

    # 4. the saving measured on text the selection never reads
    points = curve_points(cfg, rows)
    models = remapped_models(inputs.data, pieces, scores, rules, cfg["new_piece_bonus"], points)
    original = load_gpt2_tokenizer(inputs.original_json.parent)
    texts = measured_texts(art, cfg, args.profile, args.configs)
    measured = measure(texts, original, tokenizer, models)

    # 5. the rules, the csv and the research record
    phase("writing")
    write_rules_and_csv(art, rules, rows)
    table = saving_table(corpus, rows, measured, points)
    record = SelectionRecord(
        cfg,
        corpus,
        cands,
        greedy,
        selection,
        give_away,
        rejected_ids,
        rows,
        tokens_after,
        table,
        measured,
    )
    record.undertrained = undertrained_summary(indicator, reference, give_away, pieces)
    record.seconds = time.perf_counter() - t_start
    write_selection_log(art.selection_log, record)
    save_config(cfg, art.reports / f"{STEP}.config.yaml", STEP, args.profile)
    log_summary(art, record, len(forced))


if __name__ == "__main__":
    main()
