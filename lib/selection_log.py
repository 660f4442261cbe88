"""05's research record, selection_log.md: the config, the corpus, the prediction, the measured saving,
the ids given away and what was rejected.

    >>> write_selection_log(art.selection_log, record)      # record: SelectionRecord
"""

import heapq
import sys
from collections import Counter
from dataclasses import dataclass

import yaml

from lib.candidates import ranking_rule
from lib.files import write_text
from lib.free_ids import INTERMEDIATE_GAP
from lib.ivr import piece_text
from lib.saving import saving_curve, saving_sources

STEP = "05_select"


@dataclass
class SelectionRecord:
    """What selection_log.md records: the config, the corpus (lib.candidates.Corpus), the candidates
    (Candidates), the greedy state (Greedy) and its result (picks, not positive, the heap left), the ids
    given away and rejected, the csv rows, the predicted tokens after, the saving table (saving_table),
    the measured texts (measure) and the step's seconds."""

    cfg: dict
    corpus: object
    cands: object
    greedy: object
    selection: tuple
    give_away: list
    rejected_ids: Counter
    rows: list
    tokens_after: int
    table: list
    measured: list
    seconds: float = 0.0
    undertrained: dict | None = None  # the indicator's overlap with the ids given away (05)


def log_corpus(md, cfg, corpus):
    md.append(
        "## Config\n\n```yaml\n" + yaml.safe_dump(cfg, sort_keys=True, allow_unicode=True) + "```\n"
    )
    md.append("## Corpus (train split, from the pre-token table)\n")
    md.append("| | |\n|---|---|")
    before, ids = corpus.tokens_before, corpus.id_counts
    for k, v in [
        ("documents", f"{corpus.n_docs:,}"),
        ("bytes", f"{corpus.n_bytes:,}"),
        ("pre-tokens", f"{sum(corpus.pfreq):,}"),
        ("distinct GPT-2 pre-tokens", f"{corpus.n_gpt2_distinct:,}"),
        (
            "cut further by the run split",
            f"{corpus.run_cut[0]:,} occurrences ({corpus.run_cut[1]:,} distinct)",
        ),
        ("distinct pre-tokens", f"{len(corpus.ptoks):,}"),
        ("distilled (GPT-2) tokens", f"{before:,}"),
        ("tokens per byte", f"{before / max(corpus.n_bytes, 1):.4f}"),
        (
            "tokens in whitespace-only pre-tokens",
            f"{corpus.ws_tokens:,} ({corpus.ws_tokens / before:.1%})",
        ),
        ("id 220 (a single space)", f"{int(ids[220]):,} ({ids[220] / before:.1%})"),
        ("distinct ids used", f"{int((ids > 0).sum()):,}"),
    ]:
        md.append(f"| {k} | {v} |")


def log_prediction(md, cfg, corpus, rows, tokens_after, docs):
    before, n_bytes = corpus.tokens_before, max(corpus.n_bytes, 1)
    md.append("\n## Prediction on the train split\n")
    md.append(f"Ranking rule: {ranking_rule(cfg, corpus.n_docs)}.\n")
    md.append(
        f"Tokens per byte {before / n_bytes:.4f} -> {tokens_after / n_bytes:.4f} with {len(rows):,} "
        f"reassigned ids: **{1 - tokens_after / before:.1%} fewer tokens** ({before - tokens_after:,} saved).\n"
    )
    md.append("| reassigned ids | predicted saving |\n|---:|---:|")
    md.extend(f"| {n:,} | {s:.1%} |" for n, s in saving_curve(cfg, rows, before))
    md.append(f"\n## Top {min(cfg['log_top'], len(rows))} picks\n")
    md.append(
        "| rank | new string | emitted (train) | train documents (<=) | GPT-2 pieces | saving at pick | id given | "
        "old token |\n|---:|---|---:|---:|---:|---:|---:|---|"
    )
    for r in rows[: cfg["log_top"]]:
        md.append(
            f"| {r['rank']} | `{r['new_text']}` | {r['new_domain_count']:,} | {docs.get(r['new_token'], '-')} | "
            f"{len(r['old_pieces'].split())} | {r['estimated_saving']:,} | {r['old_id']} | `{r['old_token']}` |"
        )


def log_ids(md, rows, give_away, rejected_ids):
    md.append("\n## Ids given away\n")
    reasons = Counter(why for _, _, _, _, why, _ in give_away[: len(rows)])
    md.append("| why the id was free | ids |\n|---|---:|")
    md.extend(f"| {k} | {v:,} |" for k, v in reasons.most_common())
    md.append(
        f"\nTrain counts of the ids given away: max {max((r['old_domain_count'] for r in rows), default=0):,}. "
        f"Under-trained signals: GPT-2 merged the token into a longer one within {INTERMEDIATE_GAP} merges (so its "
        f"training data hardly ever left it final: ` TheNitrome`, `rawdownload`, ...), then GPT-2's merge order "
        f"(late merges are rare in its training data); the model's own rows: *Under-trained ids* below.\n"
    )
    md.append("## Rejected, and why\n")
    md.append("Ids never given away:\n\n| class | ids |\n|---|---:|")
    md.extend(f"| {k} | {v:,} |" for k, v in rejected_ids.most_common())


def log_undertrained(md, cfg, u):
    """The under-trained indicator beside the order used (give_away_order)."""
    if not u:
        return
    md.append("\n## Under-trained ids (magikarp's indicator)\n")
    if not u["computed"]:
        md.append(f"Not computed: {u['why']}.\n")
        return
    md.append(
        f"Order used: `{cfg['give_away_order']}`. Of the {u['given_away']:,} ids given away, "
        f"{u['overlap_with_top']:,} are among the {u['given_away']:,} ids the indicator scores most "
        "under-trained: how close each unembedding row (first principal component removed) lies to the "
        f"mean row of {u['reference_ids']:,} ids training never saw as a final token (lib/free_ids.py).\n"
    )
    md.append("| most under-trained | score |\n|---|---:|")
    md.extend(f"| `{piece_text(p)}` | {s} |" for p, s in u["top"])


def log_rejected(md, cfg, cands, not_positive, heap, n_target):
    md.append(
        f"\nCandidate strings ({cands.n_runs:,} runs of >= 2 tokens inside a train pre-token, "
        f"at most {cfg['max_new_bytes']} bytes; longer runs are not generated):\n"
    )
    md.append("| class | strings | examples |\n|---|---:|---|")
    for k, v in cands.rejected.most_common():
        md.append(f"| {k} | {v:,} | {', '.join(cands.examples.get(k, []))} |")
    md.append(
        f"| no saving left once better picks were made | {len(not_positive):,} | "
        f"{', '.join(repr(piece_text(c)) for c in not_positive[:5])} |"
    )
    next_best = heapq.nsmallest(5, heap)
    md.append(
        f"| not reached: num_reassign ({n_target:,}) was filled first | {len(heap):,} | "
        f"{', '.join(f'{piece_text(c)!r} (<= {-g:,.0f})' for g, c, _ in next_best)} |"
    )


def percent(x):
    return "-" if x is None else f"{x:.1%}"


def log_measured(md, table, measured, rule):
    """Train (predicted) beside held-out and out-of-domain (measured), against GPT-2, side by side, under the
    ranking rule that chose the strings (so runs with other rules compare at a glance)."""
    if not measured or not table:
        return
    md.append(
        "\n## Saving against GPT-2: train (predicted) and text never selected on (measured)\n"
    )
    md.append(
        "Fewer tokens than GPT-2's BPE with the first N reassigned ids. Train: the lattice estimator on the "
        "split the selection learns from. The other columns encode text the selection never reads with the "
        "remapped tokenizer as 06 builds it: the held-out split, and out-of-domain text.\n"
    )
    md.append(f"Ranking rule: {rule}.\n")
    md.append(
        "| reassigned ids | train (predicted) | " + " | ".join(m["name"] for m in measured) + " |"
    )
    md.append("|---:|---:|" + "---:|" * len(measured))
    md.extend(
        f"| {n:,} | {percent(train)} | " + " | ".join(map(percent, others)) + " |"
        for n, train, others in table
    )
    md.append("\n| text | documents | bytes | GPT-2 tokens | source |\n|---|---:|---:|---:|---|")
    md.extend(
        f"| {m['name']} | {m['documents']:,} | {m['bytes']:,} | {m['gpt2']:,} | {m['source']} |"
        for m in measured
    )
    log_saving_sources(md, measured, table[-1][0])


def log_saving_sources(md, measured, n):
    """Where the measured saving comes from: whitespace pieces (bounded by one token each) and the rest
    (words, numbers, punctuation: strings the text must share with the train split)."""
    md.append(f"\n### Where the saving comes from ({n:,} ids)\n")
    md.append(
        "A whitespace piece (indentation, blank lines) costs GPT-2 a token per space or newline, and a new "
        "token can make it one token but no fewer: the *whitespace ceiling* is the saving with every "
        "whitespace piece one token and everything else as GPT-2 cuts it. What lies beyond it has to come "
        "from words, numbers and punctuation that the text shares with the train split.\n"
    )
    md.append(
        "| text | whitespace pieces | GPT-2 tokens on them | saving on whitespace | whitespace ceiling | "
        "saving on the rest | total |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for m in measured:
        if m["gpt2"]:
            space, rest, ceiling = saving_sources(m, n)
            md.append(
                f"| {m['name']} | {m['whitespace']['pieces']:,} | {m['whitespace']['gpt2']:,} | {percent(space)} | "
                f"{percent(ceiling)} | {percent(rest)} | {percent(space + rest)} |"
            )


def write_selection_log(path, r: SelectionRecord) -> None:
    """selection_log.md of one selection."""
    cfg, corpus, cands, greedy, rows = r.cfg, r.corpus, r.cands, r.greedy, r.rows
    give_away, rejected_ids, tokens_after, table, measured = (
        r.give_away,
        r.rejected_ids,
        r.tokens_after,
        r.table,
        r.measured,
    )
    seconds, selection = r.seconds, r.selection
    picks, not_positive, heap = selection
    md = [
        f"# IVR selection log\n\nWritten by `{STEP}` ({' '.join(sys.argv[1:])}). The research record of which ids were "
        f"given away and which strings took them. Prediction = the lattice estimator on the train split; "
        f"06_remap measures the real tokenizer on the held-out split.\n"
    ]
    log_corpus(md, cfg, corpus)
    log_prediction(md, cfg, corpus, rows, tokens_after, cands.docs)
    log_measured(md, table, measured, ranking_rule(cfg, corpus.n_docs))
    log_undertrained(md, cfg, r.undertrained)
    log_ids(md, rows, give_away, rejected_ids)
    log_rejected(md, cfg, cands, not_positive, heap, len(give_away))
    superseded = [r for r in rows if r["new_domain_count"] == 0]
    if superseded:
        md.append(
            f"\n{len(superseded):,} picks are never emitted on train once later picks are in (they were worth "
            f"their saving when picked): "
            + ", ".join(f"`{r['new_text']}`" for r in superseded[:10])
        )
    md.append(
        f"\nEstimator check: on {greedy.drift['checked']:,} train pre-token occurrences it visited, its "
        f"old-vocabulary path has another length than the distilled tokenizer's on {greedy.drift['differ']:,} "
        f"(ties and ids given away)."
    )
    md.append(
        f"\nLazy greedy: {greedy.n_evaluated:,} re-estimations ({greedy.n_exact:,} more skipped: none of the "
        f"string's pre-tokens had changed) for {len(rows):,} picks; {seconds:,.1f} s.\n"
    )
    write_text(path, "\n".join(md) + "\n")
