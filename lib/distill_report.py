"""04's validation report as markdown: agreement on train, held-out and out-of-domain text, mismatches by
class with examples, decode identity, throughput, and the out-of-domain sources (distill_validation.md).

    >>> write_text(art.reports / "distill_validation.md", report_md(report))   # report: distill_validation.json
"""

import json

from lib.tokenizer import EOT


def show(x):
    """x as JSON in a markdown code span that a table cell can hold."""
    return "`" + json.dumps(x, ensure_ascii=False).replace("|", "\\|").replace("`", "'") + "`"


def coverage_note(r):
    """Report lines: which figures cover everything and which come from the document sample."""
    smp, held, ex = r["train"]["document_sample"], r["heldout"], r["examples"]
    lines = [
        "",
        f"Train: the pre-token figures cover every pre-token of the train split (the pre-token table); the "
        f"document figures come from a **sample** of {smp['sampled']:,} of its {smp['documents_in_split']:,} documents "
        f"(evenly spaced; `train_doc_sample`)"
        + (
            f", {smp['left_out_too_long']:,} of them left out as over `doc_max_bytes`"
            if smp["left_out_too_long"]
            else ""
        )
        + ". Held-out and out-of-domain figures cover every "
        "document"
        + (
            f" but {held['documents_left_out_too_long']:,} held-out ones over `doc_max_bytes`"
            if held["documents_left_out_too_long"]
            else ""
        )
        + ".",
    ]
    if ex.get("left_out_long"):
        lines += [
            "",
            f"{ex['left_out_long']:,} train pieces over `learn_max_piece_chars` were left out of the learning.",
        ]
    return lines


def certify_md(c, show):
    """Report lines: the certification of the wrong train pieces and each certified conflict (lib/certify.py)."""
    if not c:
        return []
    counts = ", ".join(f"{v:,} {k}" for k, v in sorted(c["counts"].items())) or "none"
    lines = [
        "## Certified conflicts",
        "",
        f"Train pieces still wrong after the repair, permutations aside: {c['wrong_train_pieces']:,}; checked "
        f"({c['seconds']} s): {counts}. Each check is a linear program (HiGHS) over every score of the piece's "
        "lattice and those of up to `certify_neighbours` examples sharing its tokens, with Viterbi adding the "
        "paths that still win (cutting planes); where it finds no conflict, the rows of the exact repair's "
        "infeasible LP (its dual ray) are checked the same way. *certified*: the LP is infeasible; a minimal infeasible set "
        "is below with exact Farkas multipliers: adding each row (BPE's segmentation scores at least the margin "
        "more than the path that beats it) times its multiplier gives 0 >= a positive number, so no Unigram "
        "scores reproduce BPE on these strings together. *no conflict among neighbours*: scores exist for the "
        "piece and those examples, so its error is not proved unavoidable (other examples may still forbid "
        "the fix). Margin 1: the path wins ties against BPE's (HF's Viterbi keeps the longest last piece), "
        "so BPE's must score strictly more; 0: at least as much.",
        "",
    ]
    lines += conflicts_md(c["conflicts"], show, 1)
    lines += ties_md(c.get("ties"), show, 1, "Wrong train pieces")
    u = c.get("unseen")
    if u:
        counts = ", ".join(f"{v:,} {k}" for k, v in sorted(u["counts"].items())) or "none"
        lines += [
            "### Held-out and out-of-domain pieces",
            "",
            f"Pieces of held-out and out-of-domain text the distilled model gets wrong: {u['wrong_unseen_pieces']:,}; "
            f"the most frequent checked the same way against the learning's examples ({u['seconds']} s): {counts}. "
            "A certified one cannot be fixed without breaking some string the learning holds (every one "
            "labelled by BPE: train pieces, vocab strings, generated examples)."
            + (
                f" Each piece also went through the exact repair's LP first, with nothing applied (the learning "
                f"never sees this text): for {len(u['fixable']):,} it found a change of scores that breaks no "
                "example or guard string, so the learning could have had them right; its infeasible LPs' rows "
                "are checked as for the train pieces."
                if "fixable" in u
                else ""
            ),
            "",
        ]
        lines += conflicts_md(u["conflicts"], show, len(c["conflicts"]) + 1)
        lines += ties_md(
            u.get("ties"),
            show,
            len(c.get("ties") or []) + 1,
            "Wrong held-out and out-of-domain pieces",
        )
    return lines


def certificates_md(c):
    """11's report (distill_certificates.md): the wrong occurrences by verdict, then certify_md."""
    lines = [
        "# 11 certify: which mismatches of the distilled tokenizer no Unigram scores can fix",
        "",
        f"Distilled tokenizer sha256 `{c['distilled_tokenizer_sha256']}`; {c['seconds']} s, peak RSS "
        f"{c['peak_rss_mb']:,.0f} MB.",
        "",
        "## Wrong pieces by verdict",
        "",
        "| text | verdict | pieces | occurrences |",
        "|---|---|---:|---:|",
    ]
    for text, classes in c["classes"].items():
        for verdict, v in classes.items():
            lines.append(f"| {text} | {verdict} | {v['pieces']:,} | {v['occurrences']:,} |")
    return "\n".join(lines + [""] + certify_md(c, show))


def ties_md(ties, show, first, whose):
    """Report lines: the forced ties (lib/certify.prove), or nothing."""
    if not ties:
        return []
    return [
        "#### Forced ties",
        "",
        f"{whose} whose exact LP was infeasible with any positive margin, though no conflict holds: adding "
        "these rows times their exact multipliers gives 0 >= 0 with every row >= 0, so any scores that reproduce "
        "BPE on these strings score BPE's segmentation and the path in each row exactly the same. HF's Viterbi "
        "then picks between equal float64 sums of different tokens, and rounding decides, as in a permutation "
        "tie (*forced tie (certified)*).",
        "",
    ] + conflicts_md(ties, show, first, "Forced tie")


def conflicts_md(conflicts, show, first, title="Conflict"):
    """One table per certified conflict (or forced tie): its rows and exact Farkas multipliers."""
    lines = []
    for n, rows in enumerate(conflicts, first):
        lines += [
            f"{title} {n}:",
            "",
            "| string | GPT-2 BPE | beaten by (same string) | margin | multiplier |",
            "|---|---|---|---:|---:|",
        ]
        lines += [
            f"| {show(x['piece'])} | {show(x['bpe'])} | {show(x['beaten_by'])} | {x['margin']} | {x['multiplier']} |"
            for x in rows
        ]
        lines.append("")
    return lines


def guards_md(g):
    """One sentence on the pair guards (04's PairGuards.summary), or nothing when they were off."""
    if not g:
        return ""
    return (
        f" Pair guards: {g['strings']:,} guard strings made for {g['tokens']:,} moved tokens with {g['partners']:,} "
        f"frequent train tokens; of {g['changes_tried']:,} candidate changes checked on them (each the best so far without "
        f"them), {g['changes_outweighed']:,} broke as much guard weight as they gained and were dropped."
    )


def exact_md(e):
    """One sentence on the exact repair (04's exact_repair), or nothing when it was off."""
    if not e or not e["pieces"]:
        return ""
    counts = ", ".join(f"{v:,} {k}" for k, v in sorted(e["counts"].items()))
    late = e["counts"].get("time limit")
    return (
        f" Exact repair (one LP per train piece left wrong, {e['seconds']} s): of {e['wrong_train_pieces']:,} wrong "
        f"train pieces, {len(e['pieces']):,} tried: {counts}; wrong example weight after it {e['wrong_weight']:,}."
        + (
            f" **{late:,} pieces were left untried (or cut off) at `exact_repair_time_limit`: the scores are the best found "
            "by then.**"
            if late
            else ""
        )
    )


def parity_md(p):
    """The tokenizers.js parity line (lib/parity.check's report)."""
    if not p or not p.get("checked"):
        return f"tokenizers.js parity: **not checked** ({(p or {}).get('why', 'no report')})."
    kinds = ", ".join(f"{k} {n:,}" for k, n in p["by_kind"].items())
    line = (
        f"Python `tokenizers` and {p['runtime']} on the same tokenizer.json: **{p['documents_differ']:,} of "
        f"{p['documents']:,} texts give other ids** ({p['bytes']:,} bytes; texts per kind: {kinds})."
    )
    if p.get("first"):
        f = p["first"]
        line += f" The first ({f['kind']}, {f['text'][:80]!r}), at id {f['at_id']}: Python {f['python']}, tokenizers.js {f['tokenizers_js']}."
    return line


def report_md(r):
    pct = lambda x: f"{100 * x:.4f}%"
    row = lambda name, a, extra="": (
        f"| {name} |{extra} {a['pretoken_occurrences']:,} | {pct(a['pretoken_occurrence_agreement'])} | "
        f"{a['distinct_pretokens']:,} | {pct(a['distinct_pretoken_agreement'])} | {a['documents']:,} | "
        f"{pct(a['document_agreement'])} | {a['ids_compared']:,} |"
    )
    ex = r["examples"]
    lines = [
        "# 04 distill: validation of the distilled Unigram tokenizer",
        "",
        f"Run split stage: {'on (' + format(r['run_units'], ',') + ' run characters; one Split after ByteLevel, inside each pre-token: the pieces the learning used)' if r['run_split'] else 'off'}. "
        f"Learned on {ex['pieces']:,} distinct train pieces ({ex['piece_occurrences']:,} occurrences) and "
        f"{ex['vocab_strings']:,} vocab strings in {r['seconds_learning']:.1f} s; wrong example weight by round: "
        f"{', '.join(f'{h:,}' for h in r['repair_history'])}."
        + guards_md(r.get("pair_guards"))
        + exact_md(r.get("exact_repair")),
        "",
        "## Agreement with GPT-2's BPE",
        "",
        "Per pre-token occurrence (GPT-2's pre-tokenizer; frequency-weighted), per distinct pre-token, and per "
        "whole document (every id equal). Held-out and out-of-domain text was never seen by the distillation.",
        "",
        "| text | pre-token occurrences | agreement | distinct pre-tokens | agreement | documents | exact | ids compared |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for split in ("train", "heldout"):
        lines.append(row(split, r[split]))
    ood = r["out_of_domain"]
    for kind, a in ood.items():
        if a.get("pretoken_occurrences"):
            lines.append(row(f"out of domain: {kind}", a))
    lines += coverage_note(r)
    skipped = [
        f"{kind} ({a['note']})" for kind, a in ood.items() if not a.get("pretoken_occurrences")
    ]
    if skipped:
        lines += ["", "Out-of-domain types skipped on this machine: " + "; ".join(skipped) + "."]
    lines += [
        "",
        "## Mismatches by class",
        "",
        "Classes: *permutation tie*: the same tokens in another order, which no scores can break (a run the "
        "split leaves whole because a neighbour could merge with it); *run in context*: a differing cut in or "
        "at a run of 3+ of one character; *score order*: the rest, left by the greedy and the exact repair "
        "(which of those no scores can fix: Certification, below).",
        "",
    ]
    texts = ["train", "heldout"] + [k for k, a in ood.items() if a.get("pretoken_occurrences")]
    classes = sorted({c for t in texts for c in (r[t] if t in r else ood[t])["mismatches"]})
    lines += [
        "| text | " + " | ".join(c.split(" (")[0] for c in classes) + " |",
        "|---|" + "---:|" * len(classes),
    ]
    for t in texts:
        m = (r[t] if t in r else ood[t])["mismatches"]
        lines.append(
            f"| {t} | "
            + " | ".join(
                f"{m[c]['occurrences']:,} ({m[c]['distinct']:,})" if c in m else "0"
                for c in classes
            )
            + " |"
        )
    lines += ["", "Occurrences (distinct pre-tokens).", ""]
    for t in texts:
        m = (r[t] if t in r else ood[t])["mismatches"]
        if not m:
            continue
        lines += [
            f"### {t}",
            "",
            "| class | count | pre-token | GPT-2 BPE | distilled |",
            "|---|---:|---|---|---|",
        ]
        for c, v in m.items():
            for e in v["examples"]:
                lines.append(
                    f"| {c.split(' (')[0]} | {e['count']:,} | {show(e['pretoken'])} | {show(e['bpe'])} | {show(e['distilled'])} |"
                )
        lines.append("")
    lines += [
        "## Certification",
        "",
        "Which of the mismatches above no Unigram scores can fix is a step of its own, left out of `make all`: "
        "`make certify` writes `distill_certificates.md` (a verdict per wrong piece, each conflict with exact "
        "Farkas multipliers, the wrong occurrences by verdict).",
        "",
    ]
    d, t = r["decode_identity"], r["throughput"]
    lines += [
        "## Decode identity",
        "",
        f"{d['sequences']:,} random id sequences (1-{d['max_len']} ids, seed {d['seed']}, some with {EOT}), decoded "
        f"with and without skip_special_tokens: **{d['mismatches']:,} mismatches**.",
        "",
        "## Where the tokenizer runs",
        "",
        parity_md(r.get("js_parity")),
        "",
        "## Encode throughput (same texts, one thread, alternating, best run of each, CPU time)",
        "",
        f"GPT-2 BPE {t['gpt2_bpe_mb_per_s']} MB/s, distilled {t['distilled_mb_per_s']} MB/s: "
        f"ratio **{t['ratio']}** on {t['bytes']:,} bytes.",
        "",
        f"Split cuts inside a BPE token: {r['split_conflicts']:,} (must be 0). "
        f"Loads with transformers.AutoTokenizer: {r['loads_with_autotokenizer']}. "
        f"{r['seconds']} s, peak RSS {r['peak_rss_mb']:,.0f} MB.",
        "",
        "## Out-of-domain sources",
        "",
        "Each file is one document (a gettext .mo catalog: its translated strings); files are read in sorted "
        "order up to the byte cap per type; duplicates and files that are not UTF-8 are left out.",
        "",
    ]
    for kind, a in ood.items():
        lines.append(
            f"- **{kind}** ({', '.join(a['patterns'])}): {len(a['files']):,} files, {sum(b for _, b in a['files']):,} bytes"
            + (f"; {a['note']}" if a["note"] else "")
        )
    lines += ["", "<details><summary>Files used, with their bytes</summary>", ""]
    for kind, a in ood.items():
        lines += [f"{kind}:", ""] + [f"- `{path}` {n:,}" for path, n in a["files"]] + [""]
    lines += ["</details>", ""]
    return "\n".join(lines)
