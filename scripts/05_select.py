"""
05 select: which GPT-2 ids to give away (IVR), and which frequent domain strings take them.

    .venv/bin/python scripts/05_select.py [--num-reassign 2000] [--min-frequency 10]
    make artifacts/analysis/reports/remap_rules.yaml        (alias: make select)

Reads the train split, the distilled Unigram (artifacts/tokenizers/distilled_unigram/) and GPT-2's
token counts (03). Writes to artifacts/analysis/reports/:
  remap_rules.yaml            what 06 and 07 read: id, its old token, its new string (you may edit it)
  replacement_candidates.csv  one row per reassigned id: old token, its train count and why it was free;
                              new string, its train count, how GPT-2 splits it, estimated token saving
  selection_log.md            the research record: config, corpus statistics, top candidates, predicted
                              tokens per byte before / after on the train split, what was rejected and why
  05_select.config.yaml

New strings. Unigram only ever sees one pre-token at a time, so a new string must lie inside one.
Candidates are runs of >= 2 consecutive tokens of a train pre-token's distilled segmentation (whole
pre-tokens included; whitespace runs such as newline + indentation count). They are taken greedily by
estimated saving = occurrences x (pieces - 1), re-estimated lazily after each pick on the same lattice
that 06 builds (a replica of tokenizers' Unigram Viterbi): a new piece c scores V(c) + B (k(c) - 1),
where the old vocabulary cuts c into k(c) pieces of total score V(c) and B = new_piece_bonus x the
largest |old score|. So c replaces its old pieces wherever they appear together, gaining B per token
saved; a small B keeps every other cut of GPT-2's (see configs/select.yaml).
Ids to give away. Lowest train count first; among equals, ids the tokenizer can never emit (their string
spans pre-tokens), then under-trained ones (GPT-2 merged them into a longer token at once, so they were
hardly ever a final BPE output: ` TheNitrome`, `rawdownload`), then ids that are not their own encoding
in the distilled tokenizer, then the latest GPT-2 merges (the rarest in GPT-2's training data). Never:
the 256 byte tokens, <|endoftext|>, ids used more than max_old_count times, configs/select.yaml's protect.
"""

import argparse
import csv
import heapq
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import load_config, save_config
from lib.files import atomic_path, iter_docs, require, sha256_file, write_text
from lib.ivr import (as_tokenizers_reads, new_string_problem, piece_text, pre_tokens, protected_ids, read_unigram,
                     to_byte_level, write_rules)
from lib.log import die, log, setup_logging
from lib.paths import DEFAULT_ARTIFACTS, Artifacts
from lib.tokenizer import EOT_ID, VOCAB_SIZE, gpt2_packaged_files

STEP = "05_select"
INTERMEDIATE_GAP = 2  # a token GPT-2 merged into a longer one within this many merges was hardly ever final


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-reassign", type=int, help="how many ids to reassign")
    p.add_argument("--min-frequency", type=int, help="least train occurrences of a new string")
    p.add_argument("--max-new-bytes", type=int, help="longest new string, in bytes")
    p.add_argument("--max-old-count", type=int, help="never give away an id used more often than this")
    p.add_argument("--artifacts", default=str(DEFAULT_ARTIFACTS), help="artifacts root (Make: ARTIFACTS=)")
    p.add_argument("--profile", default="default", help="config profile (Make: PROFILE=)")
    p.add_argument("--configs", default=None, help="configs directory (default: configs/)")
    return p.parse_args()


# -----------------------------------------------------------------------------
# the lattice: the estimator of what the remapped tokenizer will emit


class Lattice:
    """Viterbi over one pre-token, as the tokenizers Unigram does it, with the scores 06 gives.

    Old pieces keep their scores; a new piece c scores V(c) + B (k(c) - 1), where k(c) pieces of total
    score V(c) is how the old vocabulary cuts c, and B = new_piece_bonus x max |old score|. Paths add
    scores left to right in float64 and, at equal score, the one whose last piece starts earliest wins,
    as in tokenizers' Unigram, so the estimate is what 06's tokenizer emits.
    """

    def __init__(self, pieces, scores, removed):
        self.value = {p: s for i, (p, s) in enumerate(zip(pieces, scores)) if i not in removed and i != EOT_ID}
        self.max_len = max(len(p) for p in self.value)
        self._edges = {}

    def edges(self, key, text):
        """edges[end] = [(start, score, piece)] by start, built once per distinct pre-token and kept."""
        e = self._edges.get(key)
        if e is None:
            e = [[] for _ in range(len(text) + 1)]
            value, max_len = self.value, self.max_len
            for end in range(1, len(text) + 1):
                for start in range(max(0, end - max_len), end):
                    v = value.get(text[start:end])
                    if v is not None:
                        e[end].append((start, v, text[start:end]))
            self._edges[key] = e
        return e

    @staticmethod
    def best(edges, extra=None, path=False):
        """(tokens, score[, pieces]) of the best path; `extra` adds edges {end: [edge]} for this call only."""
        n = len(edges) - 1
        best_s, best_n, back = [0.0] * (n + 1), [0] * (n + 1), [None] * (n + 1)
        for end in range(1, n + 1):
            cands = edges[end] if not extra or end not in extra else sorted(edges[end] + extra[end], key=_start)
            bs = bk = None
            for edge in cands:
                score = best_s[edge[0]] + edge[1]
                if bk is None or score > bs:
                    bs, bk = score, edge
            best_s[end], best_n[end], back[end] = bs, best_n[bk[0]] + 1, bk
        if not path:
            return best_n[n], best_s[n]
        out, end = [], n
        while end > 0:
            out.append(back[end][2])
            end = back[end][0]
        return best_n[n], best_s[n], out[::-1]


def _start(edge):
    return edge[0]


def intermediates():
    """id -> the token GPT-2 merged it into at once: its training data (almost) never left it final.

    This finds the under-trained tokens of "Fishing for Magikarp" (Land & Bartolo 2024): ` TheNitrome`
    (into ` TheNitromeFan`), `rawdownload`, `InstoreAndOnline`, `embedreportprint`, ...
    """
    encoder, merges_path = gpt2_packaged_files()
    vocab = json.loads(Path(encoder).read_text(encoding="utf-8"))
    out = {}
    for line in Path(merges_path).read_text(encoding="utf-8").split("\n")[1:]:
        if line:
            a, b = line.split(" ")
            merged = vocab[a + b]
            for part in (a, b):
                if 0 < merged - vocab[part] <= INTERMEDIATE_GAP:
                    out.setdefault(vocab[part], a + b)
    return out


def occurrences(text, sub):
    """Start positions of sub in text, overlapping ones included."""
    out, i = [], text.find(sub)
    while i >= 0:
        out.append(i)
        i = text.find(sub, i + 1)
    return out


def main():
    args = parse_args()
    art = Artifacts(args.artifacts)
    cfg = load_config("select", args.profile, args.configs, {
        "num_reassign": args.num_reassign, "min_frequency": args.min_frequency,
        "max_new_bytes": args.max_new_bytes, "max_old_count": args.max_old_count})
    setup_logging(STEP, art.log_file(STEP))
    where = "configs/select.yaml"
    for key, low in (("num_reassign", 0), ("min_frequency", 1), ("max_new_bytes", 2), ("max_old_count", 0)):
        if cfg[key] < low:
            die(f"{where}: {key} must be at least {low}, got {cfg[key]}")
    if cfg["new_piece_bonus"] <= 0:
        die(f"{where}: new_piece_bonus must be above 0, got {cfg['new_piece_bonus']}")
    t_start = time.perf_counter()
    train_path = require(art.train_docs, "corpus")
    freq_path = require(art.token_frequency, "analyze")
    tokenizer, _, pieces, scores = read_unigram(require(art.distilled_tokenizer / "tokenizer.json", "distill").parent)
    piece_to_id = {p: i for i, p in enumerate(pieces)}

    # --- train split: pre-token counts and their distilled segmentation
    pre_counts = Counter()
    n_docs = n_bytes = 0
    for text in tqdm(iter_docs(train_path), desc="pre-tokens", unit="doc"):
        pre_counts.update(pre_tokens(tokenizer, text))
        n_docs += 1
        n_bytes += len(text.encode("utf-8"))
    if not pre_counts:
        die(f"{train_path}: no text; re-run `make corpus`")
    ptoks = list(pre_counts)
    pfreq = [pre_counts[p] for p in ptoks]
    model = tokenizer.model
    seg = [[t.id for t in model.tokenize(p)] for p in tqdm(ptoks, desc="segment", unit="pre-token")]
    seg_len = [len(s) for s in seg]
    tokens_before = sum(f * k for f, k in zip(pfreq, seg_len))
    ws_tokens = sum(f * k for p, f, k in zip(ptoks, pfreq, seg_len) if p and not piece_text(p).strip())
    id_counts = np.zeros(VOCAB_SIZE, dtype=np.int64)
    for s, f in zip(seg, pfreq):
        np.add.at(id_counts, s, f)
    log.info(f"train: {n_docs:,} documents, {n_bytes:,} bytes, {sum(pfreq):,} pre-tokens ({len(ptoks):,} distinct), "
             f"{tokens_before:,} distilled tokens ({tokens_before / n_bytes:.4f} tokens/byte)")

    # --- ids to give away
    import pandas as pd
    table = pd.read_parquet(freq_path)
    if len(table) != VOCAB_SIZE or "count" not in table:
        die(f"{freq_path}: expected {VOCAB_SIZE:,} rows with a count column; re-run `make analyze`")
    old_count = table.sort_values("token_id")["count"].to_numpy()
    protected = protected_ids(pieces, cfg["protect"], where)
    rejected_ids = Counter(protected.values())
    pool = []
    merged_at_once = intermediates()
    for i, piece in enumerate(pieces):
        if i in protected:
            continue
        if old_count[i] > cfg["max_old_count"]:
            rejected_ids[f"train count above max_old_count ({cfg['max_old_count']:,})"] += 1
            continue
        text = piece_text(piece)
        if "\ufffd" not in text and pre_tokens(tokenizer, text) != [piece]:
            reach, why, detail = 0, "never emitted: its string spans pre-tokens", ""
        elif i in merged_at_once:
            reach, why, detail = 1, "under-trained: GPT-2 merged it into a longer token at once", f" ({merged_at_once[i]!r})"
        elif [t.id for t in model.tokenize(piece)] != [i]:
            reach, why, detail = 2, "not its own encoding in the distilled tokenizer", ""
        else:
            reach, why, detail = 3, "late GPT-2 merge: rare in GPT-2's training data", f" (id {i:,})"
        pool.append((int(old_count[i]), reach, -i, i, why, f"train count {int(old_count[i]):,}; {why}{detail}"))
    pool.sort()
    n_force = len(cfg["force"])
    n_target = max(cfg["num_reassign"], n_force)
    if len(pool) < n_target:
        die(f"{where}: num_reassign {n_target:,} but only {len(pool):,} ids may be given away "
            f"(raise max_old_count or shorten protect)")
    give_away = pool[:n_target]
    removed = {g[3] for g in give_away}
    log.info(f"ids: {len(protected):,} protected, {len(pool):,} free to give away, taking the first {n_target:,}")

    # --- candidate strings: runs of >= 2 consecutive tokens inside a pre-token
    max_bytes = cfg["max_new_bytes"]
    cand_freq = Counter()
    cand_est = Counter()
    for k, (s, f) in enumerate(zip(seg, pfreq)):
        if len(s) < 2:
            continue
        parts = [pieces[i] for i in s]
        for a in range(len(parts)):
            acc = parts[a]
            seen = set()
            for b in range(a + 1, len(parts)):
                acc += parts[b]
                if len(acc) > max_bytes:
                    break
                cand_est[acc] += f * (b - a)
                if acc not in seen:
                    seen.add(acc)
                    cand_freq[acc] += f
    rejected = Counter()
    examples = defaultdict(list)
    candidates = {}
    for c, f in cand_freq.items():
        if c in piece_to_id:
            rejected["already a token (the distilled tokenizer splits it anyway)"] += 1
            continue
        if f < cfg["min_frequency"]:
            rejected[f"fewer than min_frequency ({cfg['min_frequency']:,}) occurrences"] += 1
            continue
        problem = new_string_problem(tokenizer, c, piece_to_id)
        if problem:
            key = problem.split(" (")[0].split(",")[0]
            rejected[key] += 1
            if len(examples[key]) < 5:
                examples[key].append(repr(piece_text(c)))
            continue
        candidates[c] = cand_est[c]
    log.info(f"candidates: {len(cand_freq):,} strings, {len(candidates):,} kept "
             f"({sum(rejected.values()):,} rejected: " + ", ".join(f"{k} {v:,}" for k, v in rejected.items()) + ")")

    # --- forced strings
    forced = []
    for item in cfg["force"]:
        if not isinstance(item, str):
            die(f"{where}: force: {item!r} is not a string")
        c = to_byte_level(item)
        if c in forced:
            die(f"{where}: force: {item!r} is listed twice")
        problem = new_string_problem(tokenizer, c, piece_to_id)
        if problem:
            die(f"{where}: force: {item!r} {problem}; remove it from force")
        forced.append(c)
    candidates.update({c: max(candidates.get(c, 0), 1) for c in forced})

    # --- which pre-tokens contain each candidate (anywhere, not only on token boundaries)
    lengths = sorted({len(c) for c in candidates})
    index = defaultdict(list)
    for k, p in enumerate(tqdm(ptoks, desc="index", unit="pre-token")):
        found = set()
        for n in lengths:
            if n > len(p):
                break
            for a in range(len(p) - n + 1):
                sub = p[a:a + n]
                if sub in candidates and sub not in found:
                    found.add(sub)
                    index[sub].append(k)

    # --- greedy selection with lazy re-estimation
    lattice = Lattice(pieces, scores, removed)
    cur_len = {}
    drift = Counter()  # pre-token occurrences where the estimator's old path differs in length from 04's

    def current(k):
        if k not in cur_len:  # first visit: the lattice of k has no new piece yet
            cur_len[k] = Lattice.best(lattice.edges(k, ptoks[k]))[0]
            drift["checked"] += pfreq[k]
            drift["differ"] += pfreq[k] * (cur_len[k] != seg_len[k])
        return cur_len[k]

    # a new piece's score, as 06 computes it and as tokenizers will read it back from tokenizer.json
    max_abs = max(abs(v) for i, v in enumerate(scores) if i != EOT_ID) or 1.0
    bonus = cfg["new_piece_bonus"] * max_abs
    order = list(candidates)
    values = []
    for c in order:
        n, score = Lattice.best(lattice.edges(("new", c), c))
        values.append(score + bonus * (n - 1))
    new_value = dict(zip(order, as_tokenizers_reads(values)))

    def value_of(c):
        return new_value[c]

    evaluated = {}  # string -> (gain, lens) at the current version

    def evaluate(c):
        if c in evaluated:
            return evaluated[c]
        value = value_of(c)
        gain, lens = 0, {}
        for k in index.get(c, ()):
            p = ptoks[k]
            extra = {}
            for a in occurrences(p, c):
                extra.setdefault(a + len(c), []).append((a, value, c))
            n = Lattice.best(lattice.edges(k, p), extra)[0]
            gain += pfreq[k] * (current(k) - n)
            lens[k] = (n, extra)
        evaluated[c] = (gain, lens)
        return gain, lens

    def accept(c, lens):
        for k, (n, extra) in lens.items():
            edges = lattice.edges(k, ptoks[k])
            for end, more in extra.items():
                edges[end] = sorted(edges[end] + more, key=_start)
            cur_len[k] = n
        evaluated.clear()

    picks = []  # (string, marginal saving at pick time, "force" | "greedy")
    for c in forced:
        gain, lens = evaluate(c)
        accept(c, lens)
        picks.append((c, gain, "force"))
    heap = [(-est, c, -1) for c, est in candidates.items() if c not in forced]
    heapq.heapify(heap)
    version = 0
    n_evaluated = 0
    not_positive = []
    bar = tqdm(total=n_target, initial=len(picks), desc="select", unit="id")
    while heap and len(picks) < n_target:
        neg, c, seen_at = heapq.heappop(heap)
        if seen_at == version:  # fresh: nothing was picked since it was estimated
            gain, lens = evaluate(c)
            if gain <= 0:
                not_positive.append(c)
                continue
            accept(c, lens)
            picks.append((c, gain, "greedy"))
            version += 1
            bar.update(1)
            continue
        gain, _ = evaluate(c)
        n_evaluated += 1
        if gain <= 0:
            not_positive.append(c)
            continue
        heapq.heappush(heap, (-gain, c, version))
    bar.close()
    if len(picks) < n_target:
        log.warning(f"warning: only {len(picks):,} strings save anything; {n_target - len(picks):,} ids stay as they are "
                    f"(lower min_frequency or raise max_new_bytes for more)")
    next_best = sorted(heap)[:10]

    # --- final segmentation of touched pre-tokens: how often each new string is emitted, the prediction
    new_set = {c for c, _, _ in picks}
    emitted = Counter()
    touched = sorted({k for c in new_set for k in index.get(c, ())})
    tokens_after = tokens_before
    for k in touched:
        n, _, path = Lattice.best(lattice.edges(k, ptoks[k]), path=True)
        tokens_after += pfreq[k] * (n - seg_len[k])
        for piece in path:
            if piece in new_set:
                emitted[piece] += pfreq[k]

    # --- assign ids, write rules, csv and log
    rules, rows = [], []
    cumulative = 0
    for rank, ((c, gain, source), (count, _, _, i, why, reason)) in enumerate(zip(picks, give_away), 1):
        cumulative += gain
        old_pieces = [t.value for t in model.tokenize(c)]  # how the distilled tokenizer (= GPT-2) cuts it
        rules.append({"id": i, "old": pieces[i], "new": c, "text": piece_text(c)})
        rows.append({
            "rank": rank, "old_id": i, "old_token": pieces[i], "old_domain_count": count, "old_reason": reason,
            "new_token": c, "new_text": json.dumps(piece_text(c), ensure_ascii=False)[1:-1],
            "new_domain_count": emitted[c], "old_pieces": " ".join(old_pieces),
            "estimated_saving": gain, "cumulative_saving": cumulative, "source": source,
        })
    superseded = [r for r in rows if r["new_domain_count"] == 0]

    header = (
        f"# IVR remap rules, written by {STEP} for {art.distilled_tokenizer / 'tokenizer.json'}\n"
        f"# (sha256 {sha256_file(art.distilled_tokenizer / 'tokenizer.json')[:16]}). Read by 06_remap and 07_align.\n"
        "# Each rule gives id `id` (until now the token `old`) the new string `new`, in byte-level form\n"
        "# (Ġ = space, Ċ = newline); `text` is the same string as plain text. Order: best first.\n"
        "# You may edit this file: delete rules, or give a rule another string by changing `text` and\n"
        "# deleting its `new`. Then `make remap align`. 06 and 07 refuse rules that name an id or string\n"
        "# twice, a protected id, an `old` that is not the tokenizer's, or a string that spans pre-tokens.\n"
    )
    write_rules(art.remap_rules, rules, header)
    columns = list(rows[0]) if rows else ["rank", "old_id", "old_token", "old_domain_count", "old_reason", "new_token",
                                          "new_text", "new_domain_count", "old_pieces", "estimated_saving",
                                          "cumulative_saving", "source"]
    with atomic_path(art.replacement_candidates) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows(rows)

    saving = 1 - tokens_after / tokens_before
    curve = []
    for point in sorted(set(cfg["curve_points"]) | {len(rows)}):
        if 0 < point <= len(rows):
            saved = rows[point - 1]["cumulative_saving"]
            curve.append((point, saved / tokens_before))
    md = []
    md.append(f"# IVR selection log\n\nWritten by `{STEP}` ({' '.join(sys.argv[1:])}). The research record of which ids were "
              f"given away and which strings took them. Prediction = the lattice estimator on the train split; "
              f"06_remap measures the real tokenizer on the held-out split.\n")
    md.append("## Config\n\n```yaml\n" + yaml.safe_dump(cfg, sort_keys=True, allow_unicode=True) + "```\n")
    md.append("## Corpus (train split)\n")
    md.append("| | |\n|---|---|")
    for k, v in [("documents", f"{n_docs:,}"), ("bytes", f"{n_bytes:,}"), ("pre-tokens", f"{sum(pfreq):,}"),
                 ("distinct pre-tokens", f"{len(ptoks):,}"), ("distilled (GPT-2) tokens", f"{tokens_before:,}"),
                 ("tokens per byte", f"{tokens_before / n_bytes:.4f}"),
                 ("tokens in whitespace-only pre-tokens", f"{ws_tokens:,} ({ws_tokens / tokens_before:.1%})"),
                 ("id 220 (a single space)", f"{int(id_counts[220]):,} ({id_counts[220] / tokens_before:.1%})"),
                 ("distinct ids used", f"{int((id_counts > 0).sum()):,}")]:
        md.append(f"| {k} | {v} |")
    md.append("\n## Prediction on the train split\n")
    md.append(f"Tokens per byte {tokens_before / n_bytes:.4f} -> {tokens_after / n_bytes:.4f} with {len(rows):,} "
              f"reassigned ids: **{saving:.1%} fewer tokens** ({tokens_before - tokens_after:,} saved).\n")
    md.append("| reassigned ids | predicted saving |\n|---:|---:|")
    md.extend(f"| {n:,} | {s:.1%} |" for n, s in curve)
    md.append(f"\n## Top {min(cfg['log_top'], len(rows))} picks\n")
    md.append("| rank | new string | emitted (train) | GPT-2 pieces | saving at pick | id given | old token |\n"
              "|---:|---|---:|---:|---:|---:|---|")
    for r in rows[:cfg["log_top"]]:
        md.append(f"| {r['rank']} | `{r['new_text']}` | {r['new_domain_count']:,} | {len(r['old_pieces'].split())} | "
                  f"{r['estimated_saving']:,} | {r['old_id']} | `{r['old_token']}` |")
    md.append("\n## Ids given away\n")
    reasons = Counter(why for _, _, _, _, why, _ in give_away[:len(rows)])
    md.append("| why the id was free | ids |\n|---|---:|")
    md.extend(f"| {k} | {v:,} |" for k, v in reasons.most_common())
    md.append(f"\nTrain counts of the ids given away: max {max((r['old_domain_count'] for r in rows), default=0):,}. "
              f"Under-trained signals: GPT-2 merged the token into a longer one within {INTERMEDIATE_GAP} merges (so its "
              f"training data hardly ever left it final: ` TheNitrome`, `rawdownload`, ...), then GPT-2's merge order "
              f"(late merges are rare in its training data). Embedding norms would need the weights, which this step "
              f"does not read; 07 reports the norms of the rows given away.\n")
    md.append("## Rejected, and why\n")
    md.append("Ids never given away:\n\n| class | ids |\n|---|---:|")
    md.extend(f"| {k} | {v:,} |" for k, v in rejected_ids.most_common())
    md.append(f"\nCandidate strings ({len(cand_freq):,} runs of >= 2 tokens inside a train pre-token, "
              f"at most {max_bytes} bytes; longer runs are not generated):\n")
    md.append("| class | strings | examples |\n|---|---:|---|")
    for k, v in rejected.most_common():
        md.append(f"| {k} | {v:,} | {', '.join(examples.get(k, []))} |")
    md.append(f"| no saving left once better picks were made | {len(not_positive):,} | "
              f"{', '.join(repr(piece_text(c)) for c in not_positive[:5])} |")
    md.append(f"| not reached: num_reassign ({n_target:,}) was filled first | {len(heap):,} | "
              f"{', '.join(f'{piece_text(c)!r} (<= {-g:,})' for g, c, _ in next_best[:5])} |")
    if superseded:
        md.append(f"\n{len(superseded):,} picks are never emitted on train once later picks are in (they were worth "
                  f"their saving when picked): " + ", ".join(f"`{r['new_text']}`" for r in superseded[:10]))
    md.append(f"\nEstimator check: on {drift['checked']:,} train pre-token occurrences it visited, its old-vocabulary "
              f"path has another length than the distilled tokenizer's on {drift['differ']:,} (ties and ids given away).")
    md.append(f"\nLazy greedy: {n_evaluated:,} re-estimations for {len(rows):,} picks; "
              f"{time.perf_counter() - t_start:,.1f} s.\n")
    write_text(art.selection_log, "\n".join(md) + "\n")
    save_config(cfg, art.reports / f"{STEP}.config.yaml", STEP, args.profile)

    log.info(f"picked {len(rows):,} strings ({len(forced):,} forced); predicted on train: tokens/byte "
             f"{tokens_before / n_bytes:.4f} -> {tokens_after / n_bytes:.4f} ({saving:.1%} fewer tokens)")
    log.info("curve: " + ", ".join(f"{n:,} ids {s:.1%}" for n, s in curve))
    if rows:
        log.info("top: " + ", ".join(f"{r['new_text']!r} {r['estimated_saving']:,}" for r in rows[:8]))
    log.info(f"wrote {art.remap_rules}, {art.replacement_candidates}, {art.selection_log} "
             f"({time.perf_counter() - t_start:,.1f} s)")


if __name__ == "__main__":
    main()
