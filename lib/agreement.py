"""Agreement of the distilled tokenizer with GPT-2's BPE: per pre-token occurrence, per distinct
pre-token and per whole document, with the mismatches grouped by why they differ.

    >>> compared = Compared(original, distilled, split, token_strings)
    >>> result, _ = evaluate_texts(iter_docs("heldout.jsonl"), compared, cfg, "held-out agreement")
    >>> result["pretoken_occurrence_agreement"], result["document_agreement"]
    (0.99996, 0.93)
"""

import collections
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from tqdm import tqdm

from lib.files import iter_docs, require
from lib.gpt2_bpe import bare, pre_tokenizer_gpt2
from lib.log import log
from lib.oodtext import corpus_file_hashes, ood_documents
from lib.parity import budget, tricky_texts
from lib.phases import phase
from lib.tokenizer_compare import decode_identity


@dataclass
class Compared:
    """The two tokenizers compared (tokenizers.Tokenizer each), the run split of the distilled one (None:
    off) and each id's byte-level string."""

    original: object
    distilled: object
    split: object | None
    token_strings: list

    @cached_property
    def original_bare(self):
        return bare(self.original)

    @cached_property
    def distilled_bare(self):
        return bare(self.distilled, self.split)


def classify(word, bpe, got, token_strings):
    """Why the distilled segmentation differs: a permutation of BPE's tokens (a tie no score breaks: a run
    the split leaves whole), a differing cut in or at the edge of a run of 3+ of one character (BPE pairs
    the run before its neighbour, which scores cannot always say), else the order of the scores (which of
    those no scores can fix: `make certify`, lib/certify_pieces.py).

        >>> classify("#####", (4242, 2), (2, 4242), token_strings)
        'permutation tie (a run the split leaves whole)'
    """
    if sorted(bpe) == sorted(got):
        return "permutation tie (a run the split leaves whole)"
    cuts_b = set(np.cumsum([len(token_strings[i]) for i in bpe]).tolist())
    cuts_g = set(np.cumsum([len(token_strings[i]) for i in got]).tolist())
    runs = [m.span() for m in re.finditer(r"(.{1,4}?)\1{2,}", word)]
    if any(lo <= c <= hi for c in cuts_b ^ cuts_g for lo, hi in runs):
        return "run in context (a cut in or at a run of 3+)"
    return "score order (left by the repairs)"


def agreement(words, bpe, counts, compared, n_examples, desc=None):
    """Per pre-token occurrence / distinct pre-token agreement, and the mismatches grouped by class.
    words: distinct byte-level pre-tokens; bpe: GPT-2's ids of each (tuples); counts: their occurrences."""
    distilled_bare, token_strings, batch = compared.distilled_bare, compared.token_strings, 50_000
    occ = ok_occ = ok_distinct = 0
    classes = collections.defaultdict(lambda: {"occurrences": 0, "distinct": 0, "examples": []})
    starts = range(0, len(words), batch)
    for a in (
        tqdm(starts, desc=desc, unit="batch", mininterval=1, leave=False)
        if desc and len(starts) > 1
        else starts
    ):
        got = distilled_bare.encode_batch(words[a : a + batch])
        for w, y, n, e in zip(words[a : a + batch], bpe[a : a + batch], counts[a : a + batch], got):
            occ += n
            g = tuple(e.ids)
            if g == y:
                ok_occ += n
                ok_distinct += 1
                continue
            c = classes[classify(w, y, g, token_strings)]
            c["occurrences"] += n
            c["distinct"] += 1
            c["examples"].append(
                (n, w, [token_strings[i] for i in y], [token_strings[i] for i in g])
            )
    for c in classes.values():
        c["examples"] = [
            {"count": n, "pretoken": w, "bpe": b, "distilled": g}
            for n, w, b, g in sorted(c["examples"], key=lambda x: (-x[0], x[1]))[:n_examples]
        ]
    return {
        "pretoken_occurrences": occ,
        "pretoken_occurrence_agreement": ok_occ / max(occ, 1),
        "distinct_pretokens": len(words),
        "distinct_pretoken_agreement": ok_distinct / max(len(words), 1),
        "mismatches": dict(sorted(classes.items())),
    }


def text_batches(texts, batch_bytes, max_doc_bytes):
    """Yield (texts of about batch_bytes, documents over max_doc_bytes left out of this batch)."""
    batch, size, skipped = [], 0, 0
    for text in texts:
        n = len(text.encode("utf-8"))
        if n > max_doc_bytes:
            skipped += 1
            continue
        batch.append(text)
        size += n
        if size >= batch_bytes:
            yield batch, skipped
            batch, size, skipped = [], 0, 0
    if batch or skipped:
        yield batch, skipped


def evaluate_texts(texts, compared, cfg, desc, n_bench=0):
    """Agreement per pre-token occurrence, distinct pre-token and whole document, with mismatch classes, on
    texts streamed in batches of eval_batch_bytes (memory holds one batch and the distinct pre-tokens).
    Returns (result, the first n_bench bytes of texts, for the throughput)."""
    original, distilled = compared.original, compared.distilled
    gpt2_pt = pre_tokenizer_gpt2()
    counts = collections.Counter()
    docs = same = ids_compared = left_out = bench_bytes = 0
    bench = []
    bar = tqdm(desc=desc, unit="B", unit_scale=True, mininterval=1, leave=False)
    for batch, skipped in text_batches(texts, cfg["eval_batch_bytes"], cfg["doc_max_bytes"]):
        left_out += skipped
        for text in batch:
            counts.update(w for w, _ in gpt2_pt.pre_tokenize_str(text))
        reference = original.encode_batch(batch, add_special_tokens=False)
        got = distilled.encode_batch(batch, add_special_tokens=False)
        docs += len(batch)
        same += sum(r.ids == g.ids for r, g in zip(reference, got))
        ids_compared += sum(len(r.ids) for r in reference)
        for text in batch:
            if bench_bytes < n_bench:
                bench.append(text)
                bench_bytes += len(text.encode("utf-8"))
        bar.update(sum(len(t.encode("utf-8")) for t in batch))
    bar.close()
    words = sorted(counts)
    bpe = [tuple(e.ids) for e in compared.original_bare.encode_batch(words)] if words else []
    result = agreement(words, bpe, [counts[w] for w in words], compared, cfg["report_examples"])
    result.update(
        {
            "documents": docs,
            "document_agreement": same / max(docs, 1),
            "ids_compared": ids_compared,
            "documents_left_out_too_long": left_out,
        }
    )
    return result, bench


def train_agreement(table, sample, compared, cfg):
    """Train agreement: per occurrence and per distinct pre-token over the whole table; per document on the
    document sample (texts, GPT-2 ids, facts), encoded in batches."""
    distilled = compared.distilled
    result = agreement(
        table.pretokens,
        table.all_ids(),
        table.counts.tolist(),
        compared,
        cfg["report_examples"],
        desc="train agreement (pre-token table)",
    )
    texts, ids_list, facts = sample
    same = start = 0
    for batch, _ in tqdm(
        text_batches(texts, cfg["eval_batch_bytes"], float("inf")),
        desc="train agreement (document sample)",
        unit="batch",
        mininterval=1,
        leave=False,
    ):
        got = distilled.encode_batch(batch, add_special_tokens=False)
        same += sum(
            np.array_equal(ref, e.ids) for ref, e in zip(ids_list[start : start + len(batch)], got)
        )
        start += len(batch)
    result.update(
        {
            "documents": len(texts),
            "document_agreement": same / max(len(texts), 1),
            "ids_compared": int(sum(len(x) for x in ids_list)),
            "document_sample": facts,
        }
    )
    return result


def validate(table, sample, compared, art, cfg):
    """Agreement on train (the table; documents: the sample), held-out (streamed), out-of-domain text, and
    decode identity. Returns (report parts, texts for the throughput, texts for the tokenizers.js parity)."""
    original, distilled = compared.original, compared.distilled
    out = {}
    phase("validation: train")
    out["train"] = train_agreement(table, sample, compared, cfg)
    phase("validation: held-out")
    out["heldout"], bench = evaluate_texts(
        iter_docs(require(art.heldout_docs, "corpus")),
        compared,
        cfg,
        "held-out agreement",
        n_bench=cfg["throughput_bytes"],
    )
    parity = {"held-out": budget(bench, cfg["js_parity_max_bytes"])}
    phase("validation: out of domain")
    out["out_of_domain"] = {}
    for kind, src in ood_documents(
        cfg["ood_sources"],
        cfg["ood_max_bytes"],
        cfg["ood_emoji_docs"],
        cfg["eval_seed"],
        in_corpus=corpus_file_hashes(require(art.corpus_manifest, "corpus")),
    ).items():
        result = (
            evaluate_texts(src["docs"], compared, cfg, f"out of domain: {kind}")[0]
            if src["docs"]
            else {}
        )
        for key in ("documents_left_out_too_long",):
            result.pop(key, None)
        parity[kind] = budget(src["docs"], cfg["js_parity_max_bytes"])
        out["out_of_domain"][kind] = {
            **result,
            "patterns": src["patterns"],
            "files": src["files"],
            "note": src["note"],
        }
        if not src["docs"]:
            log.warning(f"out of domain: {kind}: {src['note']} ({', '.join(src['patterns'])})")
    phase("validation: decode identity")
    out["decode_identity"] = decode_identity(
        original, distilled, cfg["decode_samples"], cfg["decode_max_len"], cfg["eval_seed"]
    )
    size = sum(len(t.encode("utf-8")) for t in bench)
    for text in sample[0]:  # held-out first, then train documents, up to throughput_bytes
        if size >= cfg["throughput_bytes"]:
            break
        bench.append(text)
        size += len(text.encode("utf-8"))
    parity = {k: v for k, v in parity.items() if v}
    if parity:
        parity["tricky"] = tricky_texts(compared.split.units if compared.split else [])
    return out, bench, parity
