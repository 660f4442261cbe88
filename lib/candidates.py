"""05's candidate strings: the train split as distinct distilled pre-tokens, and the runs of >= 2 of their
tokens that may become new pieces, each with a first estimate of its worth (tokens saved, weighted by the
document-frequency rules of configs/select.yaml).

    >>> corpus = distilled_pretokens(table, tokenizer, path); segment(corpus, tokenizer.model)
    >>> cands = candidate_strings(corpus, pieces, piece_to_id, tokenizer, cfg, rank_weights(corpus, 0))
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
from tqdm import tqdm

from lib.ivr import new_string_problem, piece_text, pre_tokens
from lib.log import die, log
from lib.phases import phase
from lib.pretokens import MAKE_TARGET as TABLE_STEP
from lib.tokenizer import EOT, VOCAB_SIZE, byte_alphabet

WHERE = "configs/select.yaml"


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
