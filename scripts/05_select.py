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
in the distilled tokenizer, then the latest GPT-2 merges (the rarest in GPT-2's training data). Never:
the 256 byte tokens, <|endoftext|>, ids used more than max_old_count times, configs/select.yaml's protect.
"""

import bisect
import csv
import heapq
import itertools
import json
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import load_config, parse_step_args, save_config, step_config
from lib.files import atomic_path, iter_docs, require, sha256_file, write_text
from lib.ivr import (
    bonus_per_saved_token,
    contained,
    count_pretokens,
    kept_vocab,
    new_piece_scores,
    new_string_problem,
    piece_text,
    pre_tokens,
    protected_ids,
    read_unigram,
    tokens_from_counts,
    with_rules,
    write_rules,
)
from lib.log import die, log, setup_logging
from lib.oodtext import corpus_file_hashes, ood_documents
from lib.paths import Artifacts
from lib.phases import phase
from lib.pretokens import MAKE_TARGET as TABLE_STEP
from lib.pretokens import read_pretoken_table
from lib.tokenizer import (
    EOT,
    EOT_ID,
    VOCAB_SIZE,
    byte_alphabet,
    is_byte_level,
    load_gpt2_tokenizer,
    to_byte_level,
)
from lib.unigram import as_tokenizers_reads, lattice, viterbi

STEP = "05_select"
WHERE = "configs/select.yaml"
INTERMEDIATE_GAP = (
    2  # a token GPT-2 merged into a longer one within this many merges was hardly ever final
)


# -----------------------------------------------------------------------------
# the lattice: the estimator of what the remapped tokenizer will emit


class Lattices:
    """The Unigram lattice of each train pre-token (lib/unigram's lattice and Viterbi, as tokenizers runs
    them) under the scores 06 gives: the old pieces less the ids given away, and the new pieces accepted so far.

    Candidate new string j has the provisional id VOCAB_SIZE + j, so its edges can join any lattice; `scores`
    holds the old scores, then the candidates' (lib/ivr.new_piece_scores, as tokenizers reads them back).
    A lattice is built on first use and kept: accepted new pieces are added to it.
    """

    def __init__(self, vocab, scores, strings, new_scores):
        self.vocab, self.max_len = vocab, max(map(len, vocab))
        self.scores = list(scores) + list(new_scores)
        self.strings = list(strings)  # provisional id - VOCAB_SIZE -> string
        self.new_id = {c: VOCAB_SIZE + j for j, c in enumerate(self.strings)}
        self._lats = {}

    def of(self, k, text):
        lat = self._lats.get(k)
        if lat is None:
            lat = self._lats[k] = lattice(text, self.vocab, self.max_len)
        return lat

    def tokens(self, k, text, c=None, starts=()):
        """Tokens of train pre-token k on its best path; with the new piece c at `starts` for this call only."""
        lat = self.of(k, text)
        edges = [(a, (a + len(c), self.new_id[c])) for a in starts]
        for a, edge in edges:
            bisect.insort(lat[a], edge)
        n = len(viterbi(lat, self.scores))
        for a, edge in edges:
            lat[a].remove(edge)
        return n

    def add(self, k, text, c, starts):
        """The new piece c joins pre-token k's lattice for good, at `starts`."""
        lat, i = self.of(k, text), self.new_id[c]
        for a in starts:
            bisect.insort(lat[a], (a + len(c), i))

    def best(self, k, text):
        """(tokens on the best path of pre-token k, the new strings on it)."""
        ids = viterbi(self.of(k, text), self.scores)
        return len(ids), [self.strings[i - VOCAB_SIZE] for i in ids if i >= VOCAB_SIZE]


def occurrences(text, sub):
    """Start positions of sub in text, overlapping ones included."""
    out, i = [], text.find(sub)
    while i >= 0:
        out.append(i)
        i = text.find(sub, i + 1)
    return out


# -----------------------------------------------------------------------------
# inputs


def settings(args):
    """The resolved config, checked, and logging to artifacts/logs/05_select.log."""
    art = Artifacts(args.artifacts)
    cfg = step_config("select", args)
    setup_logging(STEP, art.log_file(STEP))
    for key, low in (
        ("num_reassign", 0),
        ("min_frequency", 1),
        ("max_new_bytes", 2),
        ("max_old_count", 0),
    ):
        if cfg[key] < low:
            die(f"{WHERE}: {key} must be at least {low}, got {cfg[key]}")
    if cfg["new_piece_bonus"] <= 0:
        die(f"{WHERE}: new_piece_bonus must be above 0, got {cfg['new_piece_bonus']}")
    return art, cfg


def read_inputs(art):
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
    return original_json, table, tokenizer, data, pieces, scores


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


@dataclass
class Corpus:
    """The train split as the distilled tokenizer's model sees it: distinct pre-tokens, their counts, their cuts."""

    ptoks: list  # distinct distilled pre-tokens (byte-level)
    pfreq: list  # occurrences of each in the train split
    pdocs: list  # train documents holding each (a GPT-2 pre-token's doc_count; summed, at most n_docs, where the run split joins several)
    n_docs: int
    n_bytes: int
    n_gpt2_distinct: int  # distinct GPT-2 pre-tokens in the table
    gpt2_tokens: int  # GPT-2 BPE tokens of the train split (<|endoftext|> included)
    n_eot: int  # <|endoftext|> tokens between and inside documents
    run_cut: tuple  # (occurrences, distinct) of GPT-2 pre-tokens the run split cuts further
    seg: list = field(default_factory=list)  # the distilled tokenizer's ids of each pre-token
    seg_len: list = field(default_factory=list)
    tokens_before: int = 0
    ws_tokens: int = 0  # tokens in whitespace-only pre-tokens
    id_counts: np.ndarray = None


def distilled_pretokens(table, tokenizer, path):
    """The distilled pre-tokenizer applied to each distinct GPT-2 pre-token once, weighted by its count.

    Its ByteLevel stage gives a GPT-2 pre-token back whole; its run split may cut it (`#####` -> `####`,
    `#`), and the pieces of every pre-token that holds them add up.
    """
    phase("distilled pre-tokens of the table's GPT-2 pre-tokens")
    to_raw = {
        ord(c): chr(b) for b, c in byte_alphabet().items()
    }  # byte-level char -> the latin-1 char of its byte
    counts, docs, cut, cut_distinct = {}, {}, 0, 0
    rows = zip(table.pretokens, table.counts.tolist(), table.doc_counts.tolist())
    for p, c, d in tqdm(rows, total=len(table), desc="distilled pre-tokens", unit="pre-token"):
        try:
            text = p.translate(to_raw).encode("latin-1").decode("utf-8")
        except UnicodeError:
            die(f"{path}: pre-token {p!r} is not byte-level UTF-8 text; re-run `make {TABLE_STEP}`")
        parts = pre_tokens(tokenizer, text)
        if parts != [p]:
            cut, cut_distinct = cut + c, cut_distinct + 1
        for q in parts:
            counts[q] = counts.get(q, 0) + c
            docs[q] = docs.get(q, 0) + d
    meta = table.meta
    n_bytes = sum(
        len(p) * c for p, c in zip(table.pretokens, table.counts.tolist())
    )  # one char per byte
    n_bytes += len(EOT.encode()) * int(meta.get("endoftext", 0))
    n_docs = int(meta.get("documents", 0))
    return Corpus(
        ptoks=list(counts),
        pfreq=list(counts.values()),
        pdocs=[min(d, n_docs) for d in docs.values()],
        n_docs=n_docs,
        n_bytes=n_bytes,
        n_gpt2_distinct=len(table),
        gpt2_tokens=int(meta.get("tokens", 0)),
        n_eot=int(meta.get("endoftext", 0)),
        run_cut=(cut, cut_distinct),
    )


def segment(corpus, model):
    """The distilled tokenizer's ids of each distinct pre-token, and the train split's token figures."""
    phase("distilled segmentation of each distinct pre-token")
    corpus.seg = [
        [t.id for t in model.tokenize(p)]
        for p in tqdm(corpus.ptoks, desc="segment", unit="pre-token")
    ]
    corpus.seg_len = [len(s) for s in corpus.seg]
    pfreq, seg_len = corpus.pfreq, corpus.seg_len
    corpus.tokens_before = sum(f * k for f, k in zip(pfreq, seg_len))
    corpus.ws_tokens = sum(
        f * k for p, f, k in zip(corpus.ptoks, pfreq, seg_len) if not piece_text(p).strip()
    )
    flat = np.fromiter(chain.from_iterable(corpus.seg), dtype=np.int64, count=sum(seg_len))
    weights = np.repeat(np.asarray(pfreq, dtype=np.float64), seg_len)
    corpus.id_counts = np.rint(np.bincount(flat, weights=weights, minlength=VOCAB_SIZE)).astype(
        np.int64
    )
    log.info(
        f"train: {corpus.n_docs:,} documents, {corpus.n_bytes:,} bytes, {sum(pfreq):,} pre-tokens "
        f"({len(corpus.ptoks):,} distinct; the run split cut {corpus.run_cut[0]:,} GPT-2 pre-token occurrences, "
        f"{corpus.run_cut[1]:,} distinct), {corpus.tokens_before:,} distilled tokens "
        f"({corpus.tokens_before / max(corpus.n_bytes, 1):.4f} tokens/byte)"
    )


# -----------------------------------------------------------------------------
# ids to give away


def gpt2_counts(table):
    """GPT-2 BPE count of every id on the train split: each pre-token's ids times its count (+ <|endoftext|>)."""
    lengths = np.diff(table.ids_offsets)
    weights = np.repeat(table.counts.astype(np.float64), lengths)
    counts = np.rint(np.bincount(table.ids_flat, weights=weights, minlength=VOCAB_SIZE)).astype(
        np.int64
    )
    counts[EOT_ID] += int(table.meta.get("endoftext", 0))
    return counts


def merged_at_once(original_json):
    """id -> the token GPT-2 merged it into at once: its training data (almost) never left it final.

    From the merges of the original tokenizer.json (01), so a GPT-2-family tokenizer of your own is honoured.
    This finds the under-trained tokens of "Fishing for Magikarp" (Land & Bartolo 2024): ` TheNitrome`
    (into ` TheNitromeFan`), `rawdownload`, `InstoreAndOnline`, `embedreportprint`, ...
    """
    model = json.loads(Path(original_json).read_text(encoding="utf-8")).get("model") or {}
    vocab, merges = model.get("vocab"), model.get("merges")
    if model.get("type") != "BPE" or not isinstance(vocab, dict) or not merges:
        die(
            f"{original_json}: no BPE vocab and merges (model type {model.get('type')!r}); 05 reads GPT-2's merges "
            f"from it: re-run `make init`"
        )
    out = {}
    for merge in merges:
        a, b = merge.split(" ") if isinstance(merge, str) else merge
        merged = vocab.get(a + b)
        if merged is None:
            continue
        for part in (a, b):
            if part in vocab and 0 < merged - vocab[part] <= INTERMEDIATE_GAP:
                out.setdefault(vocab[part], a + b)
    return out


def ids_to_give_away(pieces, cfg, old_count, tokenizer, merged):
    """The ids to give, best first: (count, reach, -id, id, why, reason) each; and why the rest may not go."""
    phase("ids to give away")
    protected = protected_ids(pieces, cfg["protect"], WHERE)
    rejected_ids = Counter(protected.values())
    model, pool = tokenizer.model, []
    for i, piece in enumerate(pieces):
        if i in protected:
            continue
        if old_count[i] > cfg["max_old_count"]:
            rejected_ids[f"train count above max_old_count ({cfg['max_old_count']:,})"] += 1
            continue
        text = piece_text(piece)
        if "\ufffd" not in text and pre_tokens(tokenizer, text) != [piece]:
            reach, why, detail = 0, "never emitted: its string spans pre-tokens", ""
        elif i in merged:
            reach, why, detail = (
                1,
                "under-trained: GPT-2 merged it into a longer token at once",
                f" ({merged[i]!r})",
            )
        elif [t.id for t in model.tokenize(piece)] != [i]:
            reach, why, detail = 2, "not its own encoding in the distilled tokenizer", ""
        else:
            reach, why, detail = (
                3,
                "late GPT-2 merge: rare in GPT-2's training data",
                f" (id {i:,})",
            )
        pool.append(
            (
                int(old_count[i]),
                reach,
                -i,
                i,
                why,
                f"train count {int(old_count[i]):,}; {why}{detail}",
            )
        )
    pool.sort()
    n_target = max(cfg["num_reassign"], len(cfg["force"]))
    if len(pool) < n_target:
        die(
            f"{WHERE}: num_reassign {n_target:,} but only {len(pool):,} ids may be given away "
            f"(raise max_old_count or shorten protect)"
        )
    log.info(
        f"ids: {len(protected):,} protected, {len(pool):,} free to give away, taking the first {n_target:,}"
    )
    return pool[:n_target], rejected_ids


# -----------------------------------------------------------------------------
# candidate strings


@dataclass
class Candidates:
    estimate: dict  # string -> first estimate of its worth (before any pick)
    docs: dict  # string -> train documents holding it (an upper bound), for every string kept
    spread: dict  # string -> the factor its worth is ranked by: (docs / train documents) ** document_weight
    n_runs: int  # distinct runs generated
    rejected: Counter
    examples: dict


def rank_weights(corpus, cap):
    """What the occurrences of each pre-token are worth when candidates are ranked: at most `cap` per train
    document that holds it (configs/select.yaml: per_document_cap; 0 = every occurrence counts).

    A string frequent in one file (a data table, a test's fixture) is worth less to text the selection never
    saw than one spread over many files: with cap 2, 500 occurrences in one document weigh 2, and 50 in 50
    documents weigh 50. The pre-token table gives each pre-token's document count.
    """
    if not cap:
        return list(corpus.pfreq)
    return [min(f, cap * d) for f, d in zip(corpus.pfreq, corpus.pdocs)]


def document_spread(docs, n_docs, power):
    """The factor a candidate's worth is ranked by: (train documents holding it / train documents) ** power
    (configs/select.yaml: document_weight; 0 = 1 for every string).

    Worth counts tokens, so a string that fills one long file (a table of constants, a test's data) can
    outrank one that every file uses; text the selection never saw is more likely to hold the second.
    With power 1, a string in a tenth of the documents needs ten times the saving of one in all of them.
    """
    if not power:
        return dict.fromkeys(docs, 1.0)
    return {c: (min(d, n_docs) / n_docs) ** power for c, d in docs.items()}


def check_document_rules(cfg, n_docs):
    """min_documents and document_weight need the train split's document count, and a floor it can meet."""
    if (cfg["min_documents"] or cfg["document_weight"]) and not n_docs:
        die(
            f"{WHERE}: min_documents and document_weight need the train documents, but the pre-token table "
            f"records none; re-run `make {TABLE_STEP}` or set both to 0"
        )
    if cfg["min_documents"] > n_docs:
        die(
            f"{WHERE}: min_documents {cfg['min_documents']:,} is above the {n_docs:,} train documents; lower it"
        )


def ranking_rule(cfg, n_docs):
    """The ranking rule in words, for selection_log.md and the log: what a candidate's worth is."""
    rule = "tokens saved on train"
    if cfg["per_document_cap"]:
        rule += f", each pre-token counted at most {cfg['per_document_cap']:,} times per train document holding it"
    if cfg["document_weight"]:
        rule += f", times (train documents holding the string / {n_docs:,}) ** {cfg['document_weight']:g}"
    floor = (
        f"; candidates must lie in at least {cfg['min_documents']:,} train documents"
        if cfg["min_documents"]
        else "; no document floor"
    )
    return (
        f"worth = {rule}{floor} (per_document_cap {cfg['per_document_cap']}, min_documents {cfg['min_documents']}, "
        f"document_weight {cfg['document_weight']:g})"
    )


def candidate_runs(corpus, pieces, max_bytes, weights):
    """Runs of >= 2 consecutive tokens inside a pre-token: occurrences, documents and worth estimate.

    A string's documents are the doc_count of each pre-token holding it as a run, once per pre-token,
    summed: an upper bound (a document with two such pre-tokens counts twice), capped at the train
    documents by candidate_strings.
    """
    phase("candidate strings")
    cand_freq, cand_docs, cand_est = Counter(), Counter(), Counter()
    for s, f, d, w in zip(
        tqdm(corpus.seg, desc="candidates", unit="pre-token"), corpus.pfreq, corpus.pdocs, weights
    ):
        if len(s) < 2:
            continue
        parts, held = [pieces[i] for i in s], set()
        for a in range(len(parts)):
            acc, seen = parts[a], set()
            for b in range(a + 1, len(parts)):
                acc += parts[b]
                if len(acc) > max_bytes:
                    break
                cand_est[acc] += w * (b - a)
                if acc not in seen:
                    seen.add(acc)
                    cand_freq[acc] += f
                held.add(acc)
        for acc in held:
            cand_docs[acc] += d
    return cand_freq, cand_docs, cand_est


def candidate_strings(corpus, pieces, piece_to_id, tokenizer, cfg, weights):
    """The runs that may become new pieces: frequent enough, in enough documents, not a token, one pre-token
    on their own; each with its first worth estimate, times its document spread (document_spread)."""
    check_document_rules(cfg, corpus.n_docs)
    cand_freq, cand_docs, cand_est = candidate_runs(corpus, pieces, cfg["max_new_bytes"], weights)
    rejected, examples, estimate, docs = Counter(), defaultdict(list), {}, {}
    for c, f in tqdm(
        cand_freq.items(), total=len(cand_freq), desc="check candidates", unit="string"
    ):
        if c in piece_to_id:
            rejected["already a token (the distilled tokenizer splits it anyway)"] += 1
            continue
        if f < cfg["min_frequency"]:
            rejected[f"fewer than min_frequency ({cfg['min_frequency']:,}) occurrences"] += 1
            continue
        if cand_docs[c] < cfg["min_documents"]:
            key = f"in fewer than min_documents ({cfg['min_documents']:,}) train documents"
            rejected[key] += 1
            if len(examples[key]) < 5:
                examples[key].append(repr(piece_text(c)))
            continue
        problem = new_string_problem(tokenizer, c, piece_to_id)
        if problem:
            key = problem.split(" (")[0].split(",")[0]
            key = (
                "spans 2 or more pre-tokens" if key.startswith("spans ") else key
            )  # one class, not one per count
            rejected[key] += 1
            if len(examples[key]) < 5:
                examples[key].append(repr(piece_text(c)))
            continue
        estimate[c], docs[c] = cand_est[c], min(cand_docs[c], corpus.n_docs)
    spread = document_spread(docs, corpus.n_docs, cfg["document_weight"])
    estimate = {c: est * spread[c] for c, est in estimate.items()}
    log.info(
        f"candidates: {len(cand_freq):,} strings, {len(estimate):,} kept "
        f"({sum(rejected.values()):,} rejected: "
        + ", ".join(f"{k} {v:,}" for k, v in rejected.items())
        + ")"
    )
    return Candidates(estimate, docs, spread, len(cand_freq), rejected, examples)


def new_piece_values(strings, vocab, scores, new_piece_bonus):
    """The score 06 gives each new string (lib/ivr.new_piece_scores), as tokenizers reads it back from tokenizer.json."""
    phase("new piece scores")
    bonus, _ = bonus_per_saved_token(scores, new_piece_bonus)
    return as_tokenizers_reads(new_piece_scores(strings, vocab, scores, bonus))


def contains_index(ptoks, strings):
    """string -> the train pre-tokens (by position) that contain it anywhere, not only on token boundaries."""
    phase("which pre-tokens contain each candidate")
    index = defaultdict(list)
    for k, found in enumerate(contained(tqdm(ptoks, desc="index", unit="pre-token"), strings)):
        for sub in found:
            index[sub].append(k)
    return index


# -----------------------------------------------------------------------------
# greedy selection with lazy re-estimation


class Greedy:
    """The state of the greedy selection: each train pre-token's lattice (with the new pieces accepted so
    far), its current token count, and when it last changed, so an estimate whose pre-tokens all stayed
    the same is known to be exact without a new Viterbi. Candidates are ranked by their worth: the saving
    with each pre-token's occurrences weighted by `weights` (rank_weights), times the string's document
    spread (document_spread; 1 for a string not in it); a pick records its real saving."""

    def __init__(self, lattices, corpus, index, weights, spread):
        self.lattices, self.corpus, self.index, self.weights, self.spread = (
            lattices,
            corpus,
            index,
            weights,
            spread,
        )
        self.cur_len = {}  # k -> tokens of pre-token k with the pieces accepted so far
        self.changed_at = {}  # k -> the version whose pick last changed pre-token k
        self.version = 0  # number of accepted strings
        self.evaluated = {}  # string -> (worth, gain, lens) at the current version
        self.drift = (
            Counter()
        )  # occurrences where the estimator's old path differs in length from 04's
        self.n_evaluated = self.n_exact = 0

    def current(self, k):
        if k not in self.cur_len:  # first visit: the lattice of k has no new piece yet
            n = self.cur_len[k] = self.lattices.tokens(k, self.corpus.ptoks[k])
            self.drift["checked"] += self.corpus.pfreq[k]
            self.drift["differ"] += self.corpus.pfreq[k] * (n != self.corpus.seg_len[k])
        return self.cur_len[k]

    def evaluate(self, c):
        """(worth of c now, its saving on train now, {k: (tokens with c, where c starts in pre-token k)})."""
        if c in self.evaluated:
            return self.evaluated[c]
        ptoks, pfreq, weights = self.corpus.ptoks, self.corpus.pfreq, self.weights
        worth, gain, lens = 0, 0, {}
        for k in self.index.get(c, ()):
            p = ptoks[k]
            starts = occurrences(p, c)
            current = self.current(k)
            n = self.lattices.tokens(k, p, c, starts)
            gain += pfreq[k] * (current - n)
            worth += weights[k] * (current - n)
            lens[k] = (n, starts)
        worth *= self.spread.get(c, 1.0)
        self.evaluated[c] = (worth, gain, lens)
        return worth, gain, lens

    def accept(self, c, lens):
        self.version += 1
        for k, (n, starts) in lens.items():
            self.lattices.add(k, self.corpus.ptoks[k], c, starts)
            self.cur_len[k] = n
            self.changed_at[k] = self.version
        self.evaluated.clear()

    def still_exact(self, c, seen_at):
        """No pre-token holding c changed since c was estimated at version seen_at."""
        changed_at = self.changed_at
        return seen_at >= 0 and all(changed_at.get(k, 0) <= seen_at for k in self.index.get(c, ()))

    def run(self, forced, estimate, n_target):
        """Forced strings first, then the best marginal worth each time; returns the picks and the leftovers."""
        phase("greedy selection")
        picks, not_positive = (
            [],
            [],
        )  # picks: (string, marginal saving at pick time, "force" | "greedy")
        for c in forced:
            _, gain, lens = self.evaluate(c)
            self.accept(c, lens)
            picks.append((c, gain, "force"))
        heap = [(-est, c, -1) for c, est in estimate.items() if c not in forced]
        heapq.heapify(heap)
        bar = tqdm(total=n_target, initial=len(picks), desc="select", unit="id")
        while heap and len(picks) < n_target:
            neg, c, seen_at = heapq.heappop(heap)
            if seen_at == self.version:  # fresh: nothing was picked since it was estimated
                worth, gain, lens = self.evaluate(c)
                if worth <= 0:
                    not_positive.append(c)
                    continue
                self.accept(c, lens)
                picks.append((c, gain, "greedy"))
                bar.update(1)
                continue
            if self.still_exact(c, seen_at):  # the same estimate, now known to be fresh
                self.n_exact += 1
                heapq.heappush(heap, (neg, c, self.version))
                continue
            worth = self.evaluate(c)[0]
            self.n_evaluated += 1
            if worth <= 0:
                not_positive.append(c)
                continue
            heapq.heappush(heap, (-worth, c, self.version))
        bar.close()
        if len(picks) < n_target:
            log.warning(
                f"warning: only {len(picks):,} strings save anything; {n_target - len(picks):,} ids stay as they "
                f"are (lower min_frequency or raise max_new_bytes for more)"
            )
        return picks, not_positive, heap

    def predict(self, new_set):
        """Tokens on train with the picks, and how often each new string is emitted: the final segmentations."""
        phase("prediction on the train split")
        emitted, tokens_after = Counter(), self.corpus.tokens_before
        touched = sorted({k for c in new_set for k in self.index.get(c, ())})
        for k in tqdm(touched, desc="predict", unit="pre-token"):
            n, new_pieces = self.lattices.best(k, self.corpus.ptoks[k])
            tokens_after += self.corpus.pfreq[k] * (n - self.corpus.seg_len[k])
            for piece in new_pieces:
                emitted[piece] += self.corpus.pfreq[k]
        return tokens_after, emitted


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


def remapped_models(data, pieces, scores, rules, new_piece_bonus, points):
    """{n: the Unigram model of the remapped tokenizer with the first n rules}, built as 06 builds it."""
    from tokenizers import Tokenizer

    phase("remapped tokenizers at the curve points")
    bonus, _ = bonus_per_saved_token(scores, new_piece_bonus)
    new = new_piece_scores(
        [r["new"] for r in rules], kept_vocab(pieces, {r["id"] for r in rules}), scores, bonus
    )
    return {
        n: Tokenizer.from_str(json.dumps(with_rules(data, rules[:n], new[:n]))).model
        for n in points
    }


def is_whitespace_piece(piece):
    """True for a piece of whitespace only (indentation, blank lines): no new token can make it less than one.

    >>> is_whitespace_piece("ĊĠĠĠĠĠĠĠ"), is_whitespace_piece("Ġreturn")
    (True, False)
    """
    return is_byte_level(piece) and piece_text(piece).isspace()


def measure(texts, original, tokenizer, models, batch_docs=256):
    """For each text type: documents, bytes, GPT-2 BPE tokens (encoding every document), {n: remapped tokens}
    (from its distinct pre-tokens: the model sees one pre-token at a time), and the same on its whitespace
    pieces alone ("whitespace": their number, GPT-2's tokens and {n: remapped tokens} on them). Documents are
    read in batches, one pass, so a held-out split of GBs holds one batch and the distinct pre-tokens."""
    phase("measured saving on held-out and out-of-domain text")
    out = []
    for name, docs, source in tqdm(texts, desc="measure", unit="type"):
        counts, gpt2, n_docs, n_bytes, n_eot, docs = Counter(), 0, 0, 0, 0, iter(docs)
        while batch := list(itertools.islice(docs, batch_docs)):
            gpt2 += sum(len(e.ids) for e in original.encode_batch(batch, add_special_tokens=False))
            n_eot += count_pretokens(tokenizer, batch, counts)
            n_docs, n_bytes = (
                n_docs + len(batch),
                n_bytes + sum(len(t.encode("utf-8")) for t in batch),
            )
        space = {p: f for p, f in counts.items() if is_whitespace_piece(p)}
        out.append(
            {
                "name": name,
                "source": source,
                "documents": n_docs,
                "gpt2": gpt2,
                "bytes": n_bytes,
                "tokens": {n: tokens_from_counts(m, counts, n_eot) for n, m in models.items()},
                "whitespace": {
                    "pieces": sum(space.values()),
                    "gpt2": tokens_from_counts(original.model, space),
                    "tokens": {n: tokens_from_counts(m, space) for n, m in models.items()},
                },
            }
        )
    return out


def saving_table(corpus, rows, measured, points):
    """[(n, train predicted saving, [measured saving of each type or None])], all against GPT-2's BPE tokens."""
    out = []
    for n in points:
        after = corpus.tokens_before + corpus.n_eot - rows[n - 1]["cumulative_saving"]
        train = 1 - after / corpus.gpt2_tokens if corpus.gpt2_tokens else None
        out.append(
            (n, train, [1 - m["tokens"][n] / m["gpt2"] if m["gpt2"] else None for m in measured])
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
        f"(late merges are rare in its training data). Embedding norms would need the weights, which this step "
        f"does not read; 07 reports the norms of the rows given away.\n"
    )
    md.append("## Rejected, and why\n")
    md.append("Ids never given away:\n\n| class | ids |\n|---|---:|")
    md.extend(f"| {k} | {v:,} |" for k, v in rejected_ids.most_common())


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


def curve_points(cfg, rows):
    """The config's curve points that the picks reach, and the number of picks."""
    return [n for n in sorted(set(cfg["curve_points"]) | {len(rows)}) if 0 < n <= len(rows)]


def saving_curve(cfg, rows, tokens_before):
    """(reassigned ids, predicted saving) at the config's curve points and at the end."""
    return [(n, rows[n - 1]["cumulative_saving"] / tokens_before) for n in curve_points(cfg, rows)]


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


def saving_sources(m, n):
    """(saving on whitespace pieces, saving on the rest, the whitespace ceiling), each as a share of GPT-2's
    tokens on the text, with n reassigned ids. The ceiling is the saving with every whitespace piece one token
    and the rest as GPT-2 cuts it: what new strings of whitespace alone can give."""
    space, total = m["whitespace"], max(m["gpt2"], 1)
    on_space = (space["gpt2"] - space["tokens"][n]) / total
    rest = ((m["gpt2"] - space["gpt2"]) - (m["tokens"][n] - space["tokens"][n])) / total
    return on_space, rest, (space["gpt2"] - space["pieces"]) / total


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


def write_selection_log(
    art,
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
    seconds,
):
    picks, not_positive, heap = selection
    md = [
        f"# IVR selection log\n\nWritten by `{STEP}` ({' '.join(sys.argv[1:])}). The research record of which ids were "
        f"given away and which strings took them. Prediction = the lattice estimator on the train split; "
        f"06_remap measures the real tokenizer on the held-out split.\n"
    ]
    log_corpus(md, cfg, corpus)
    log_prediction(md, cfg, corpus, rows, tokens_after, cands.docs)
    log_measured(md, table, measured, ranking_rule(cfg, corpus.n_docs))
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
    write_text(art.selection_log, "\n".join(md) + "\n")


def log_summary(art, cfg, corpus, rows, n_forced, tokens_after, table, measured, seconds):
    before, n_bytes = corpus.tokens_before, max(corpus.n_bytes, 1)
    log.info(
        f"picked {len(rows):,} strings ({n_forced:,} forced); predicted on train: tokens/byte "
        f"{before / n_bytes:.4f} -> {tokens_after / n_bytes:.4f} ({1 - tokens_after / before:.1%} fewer tokens)"
    )
    log.info(f"ranking rule: {ranking_rule(cfg, corpus.n_docs)}")
    log.info(
        "curve: " + ", ".join(f"{n:,} ids {s:.1%}" for n, s in saving_curve(cfg, rows, before))
    )
    if rows:
        log.info(
            "top: " + ", ".join(f"{r['new_text']!r} {r['estimated_saving']:,}" for r in rows[:8])
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
        f"wrote {art.remap_rules}, {art.replacement_candidates}, {art.selection_log} ({seconds:,.1f} s)"
    )


# -----------------------------------------------------------------------------


def main():
    args = parse_step_args("select", __doc__)
    art, cfg = settings(args)
    t_start = time.perf_counter()
    original_json, table, tokenizer, data, pieces, scores = read_inputs(art)
    piece_to_id = {p: i for i, p in enumerate(pieces)}
    forced = forced_strings(cfg, tokenizer, piece_to_id)
    corpus = distilled_pretokens(table, tokenizer, art.pretoken_table)
    segment(corpus, tokenizer.model)
    give_away, rejected_ids = ids_to_give_away(
        pieces, cfg, gpt2_counts(table), tokenizer, merged_at_once(original_json)
    )
    del table
    weights = rank_weights(corpus, cfg["per_document_cap"])
    cands = candidate_strings(corpus, pieces, piece_to_id, tokenizer, cfg, weights)
    cands.estimate.update({c: max(cands.estimate.get(c, 0), 1) for c in forced})
    vocab = kept_vocab(pieces, {g[3] for g in give_away})
    strings = list(cands.estimate)
    lattices = Lattices(
        vocab, scores, strings, new_piece_values(strings, vocab, scores, cfg["new_piece_bonus"])
    )
    index = contains_index(corpus.ptoks, strings)
    greedy = Greedy(lattices, corpus, index, weights, cands.spread)
    selection = greedy.run(forced, cands.estimate, len(give_away))
    tokens_after, emitted = greedy.predict({c for c, _, _ in selection[0]})
    rules, rows = assign(selection[0], give_away, pieces, tokenizer.model, emitted)
    points = curve_points(cfg, rows)
    models = remapped_models(data, pieces, scores, rules, cfg["new_piece_bonus"], points)
    measured = measure(
        measured_texts(art, cfg, args.profile, args.configs),
        load_gpt2_tokenizer(original_json.parent),
        tokenizer,
        models,
    )

    phase("writing")
    write_rules_and_csv(art, rules, rows)
    write_selection_log(
        art,
        cfg,
        corpus,
        cands,
        greedy,
        selection,
        give_away,
        rejected_ids,
        rows,
        tokens_after,
        saving_table(corpus, rows, measured, points),
        measured,
        time.perf_counter() - t_start,
    )
    save_config(cfg, art.reports / f"{STEP}.config.yaml", STEP, args.profile)
    log_summary(
        art,
        cfg,
        corpus,
        rows,
        len(forced),
        tokens_after,
        saving_table(corpus, rows, measured, points),
        measured,
        time.perf_counter() - t_start,
    )


if __name__ == "__main__":
    main()
