"""
03 analyze: tokenise the train split with GPT-2's BPE; count every token and every distinct pre-token.

    .venv/bin/python scripts/03_analyze.py [--encoder gigatoken|tokenizers] [--workers 2]
    make artifacts/analysis/reports/pretoken_table.parquet        (alias: make analyze)

Reads artifacts/corpora/cleaned/train.jsonl and artifacts/tokenizers/original/tokenizer.json.
Writes to artifacts/analysis/reports/:
  bpe_token_id_sequences.txt  one train document per line, its GPT-2 ids separated by spaces
  token_frequency.parquet     token_id, token, count, doc_count, frequency -- all 50,257 ids, zeros included
  pretoken_table.parquet      every distinct GPT-2 pre-token: count, doc_count, BPE ids (lib/pretokens.py);
                              what 04 learns from and 05 takes candidates from
  analyze_summary.json        documents, bytes, tokens, distinct pre-tokens, throughput, peak memory

The corpus streams through worker processes in batches, so memory follows the batches in flight and the
distinct pre-tokens, not the corpus. The encoder is `gigatoken` (compiled, exact GPT-2 BPE; see the
README), checked on every run against `tokenizers`' own encode on the first documents (check_bytes), and
the pre-token table is checked against the id stream (the same tokens, in total and on those documents).
"""

import collections
import ctypes
import json
import multiprocessing
import operator
import os
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import parse_step_args, save_config, step_config
from lib.encoder import Encoder, id_lines
from lib.files import atomic_path, first_docs, iter_docs, require, sha256_file, write_json
from lib.log import die, log, setup_logging
from lib.paths import Artifacts
from lib.pretokens import write_pretoken_table
from lib.tokenizer import EOT, EOT_ID, VOCAB_SIZE, load_gpt2_tokenizer, to_byte_level

STEP = "03_analyze"


def batches(path, batch_docs, batch_bytes, workers=1, smallest=64_000):
    """Yield (texts, jsonl bytes) from a cleaned jsonl file, bounded in count and bytes. The first batches
    are small and double up to batch_bytes, so every worker starts at once, and the batches shrink again
    toward the end of the file (to a share of what is left), so the workers finish together."""
    total = Path(path).stat().st_size
    batch, n_bytes, done, k = [], 0, 0, 0
    limit = min(batch_bytes, smallest)
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                die(f"{path}:{line_no}: not a cleaned-corpus record; re-run `make corpus`")
            batch.append(text)
            n_bytes += len(line)
            if len(batch) >= batch_docs or n_bytes >= limit:
                yield batch, n_bytes
                done, k = done + n_bytes, k + 1
                batch, n_bytes = [], 0
                limit = min(
                    batch_bytes, smallest << k, max(smallest, (total - done) // (2 * workers))
                )
    if batch:
        yield batch, n_bytes


def doc_id_counts(flat, lengths):
    """How many of the documents hold each id: a sort per short document, a vocab mask per long one."""
    counts = np.zeros(VOCAB_SIZE, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for a, b in zip(starts[:-1].tolist(), starts[1:].tolist()):
        if b - a <= 256:
            counts[np.unique(flat[a:b])] += 1
        else:
            mask = np.zeros(VOCAB_SIZE, dtype=bool)
            mask[flat[a:b]] = True
            counts[mask] += 1
    return counts


def count_pretokens(encoder, texts, counts, doc_counts):
    """Add the texts' pre-tokens to counts and doc_counts ({raw bytes: n}); a document counts once per
    pre-token. The special token splits a text first (BPE never sees across it), as tokenizers does."""
    first = operator.itemgetter(0)
    for text in texts:
        parts = text.split(EOT)
        if len(parts) == 1:
            found = encoder.pretokens(text)
            doc_counts.update(map(first, found))
        else:
            found = [pair for part in parts if part for pair in encoder.pretokens(part)]
            doc_counts.update({word for word, _ in found})
        for word, n in found:
            counts[word] = counts.get(word, 0) + n


_worker = {}


def _start_worker(encoder, barrier):
    with_parent = getattr(
        ctypes.CDLL(None), "prctl", None
    )  # Linux: die with the step (kill -9 included)
    if with_parent is not None:
        with_parent(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    # gigatoken's pre-tokenizer prints two timing lines per call on stderr; errors come back pickled anyway
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    _worker.update(encoder=encoder, barrier=barrier, counts={}, doc_counts=collections.Counter())


def encode_batch(task):
    """In a worker: (lines, id counts, id document counts, documents, text bytes, tokens, jsonl bytes) of one
    batch; its pre-tokens are added to the worker's own counts."""
    texts, line_bytes = task
    encoder = _worker["encoder"]
    flat, lengths = encoder.encode(texts)
    count_pretokens(encoder, texts, _worker["counts"], _worker["doc_counts"])
    counts = np.bincount(flat, minlength=VOCAB_SIZE)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return (
        id_lines(flat, lengths),
        counts,
        doc_id_counts(flat, lengths),
        len(texts),
        n_bytes,
        int(lengths.sum()),
        line_bytes,
    )


def worker_pretokens(_):
    """In a worker, once at the end: its pre-token counts. The barrier makes each worker take one call."""
    _worker["barrier"].wait(timeout=600)
    return _worker["counts"], dict(_worker["doc_counts"])


# -----------------------------------------------------------------------------
# phases


def add_batch(totals, result, seq_out, bar):
    """Write one batch's lines and add its counts to the totals."""
    lines, counts, doc_counts, n_docs, n_bytes, n_tokens, line_bytes = result
    seq_out.write(lines)
    totals["counts"] += counts
    totals["doc_counts"] += doc_counts
    totals["documents"] += n_docs
    totals["bytes"] += n_bytes
    totals["tokens"] += n_tokens
    bar.update(line_bytes)


def encode_corpus(train_path, cfg, encoder, workers, seq_out):
    """Stream the train split through the workers and write the id lines; return the totals (documents, bytes,
    tokens, counts and document counts per id) and each worker's pre-token counts. At most two batches per
    worker are in flight, so memory does not grow with the corpus."""
    totals = {
        "documents": 0,
        "bytes": 0,
        "tokens": 0,
        "counts": np.zeros(VOCAB_SIZE, np.int64),
        "doc_counts": np.zeros(VOCAB_SIZE, np.int64),
    }
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(workers)
    pool = context.Pool(workers, _start_worker, (encoder, barrier))
    try:
        pending = collections.deque()
        with tqdm(
            total=train_path.stat().st_size, unit="B", unit_scale=True, desc="encode", mininterval=1
        ) as bar:
            for task in batches(train_path, cfg["batch_docs"], cfg["batch_bytes"], workers):
                pending.append(pool.apply_async(encode_batch, (task,)))
                while len(pending) > 2 * workers:
                    add_batch(totals, pending.popleft().get(), seq_out, bar)
            while pending:
                add_batch(totals, pending.popleft().get(), seq_out, bar)
        log.info("collecting the workers' pre-token counts")
        parts = pool.map(worker_pretokens, range(workers), chunksize=1)
    finally:
        pool.terminate()
    return totals, parts


def merge_pretokens(parts):
    """One {raw pre-token: (count, documents)} from the workers' counts, as sorted rows: most frequent first,
    ties by pre-token (byte-level strings: the table's own order, deterministic). Returns (texts, byte-level
    strings, counts, document counts)."""
    counts, doc_counts = parts[0]
    doc_counts = collections.Counter(doc_counts)
    for more_counts, more_docs in parts[1:]:
        for word, n in tqdm(
            more_counts.items(), desc="merge", unit="pre-token", mininterval=1, leave=False
        ):
            counts[word] = counts.get(word, 0) + n
        doc_counts.update(more_docs)
    words = list(counts)
    try:
        text = [w.decode("utf-8") for w in words]
    except UnicodeDecodeError:
        die(
            "a pre-token is not UTF-8 (the encoder cut a character); set encoder: tokenizers in configs/analyze.yaml"
        )
    level = list(map(to_byte_level, text))
    order = sorted(range(len(words)), key=lambda k: (-counts[words[k]], level[k]))
    return (
        [text[k] for k in order],
        [level[k] for k in order],
        np.array([counts[words[k]] for k in order], dtype=np.int64),
        np.array([doc_counts[words[k]] for k in order], dtype=np.int64),
    )


def pretoken_ids(encoder, texts, chunk=200_000):
    """GPT-2's BPE ids of each distinct pre-token, encoded alone (BPE never looks past a pre-token)."""
    flats, lengths = [], []
    for a in tqdm(
        range(0, len(texts), chunk),
        desc="BPE of pre-tokens",
        unit="chunk",
        mininterval=1,
        leave=False,
    ):
        flat, n = encoder.encode(texts[a : a + chunk], parallel=True)
        flats.append(flat)
        lengths.append(n)
    flat = np.concatenate(flats) if flats else np.zeros(0, np.int64)
    n = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    return flat, np.concatenate([[0], np.cumsum(n)]).astype(np.int64)


def check_against_tokenizers(train_path, seq_path, encoder, table, check_bytes):
    """Stop unless the first documents' ids are tokenizers' GPT-2 BPE, exactly, and the pre-token table
    rebuilds them (each pre-token's ids in order, the special token between parts) and all tokens."""
    texts, _ = first_docs(iter_docs(train_path), check_bytes)
    with open(seq_path, encoding="ascii") as f:
        lines = [f.readline().rstrip("\n") for _ in texts]
    reference = [
        " ".join(map(str, e.ids))
        for e in encoder.reference.encode_batch_fast(texts, add_special_tokens=False)
    ]
    if lines != reference:
        die(
            f"{train_path}: {encoder.name}'s ids differ from tokenizers' GPT-2 BPE in the first {len(texts):,} "
            f"documents; set encoder: tokenizers in configs/analyze.yaml"
        )
    words = {
        w.decode("utf-8")
        for t in texts
        for part in t.split(EOT)
        for w in encoder.pretoken_list(part)
    }
    row = {w: k for k, w in enumerate(table["text"]) if w in words}
    flat, offsets = table["ids_flat"].tolist(), table["ids_offsets"].tolist()
    for text, line in zip(texts, lines):
        rebuilt = []
        for k, part in enumerate(text.split(EOT)):
            rebuilt += [EOT_ID] if k else []
            for w in encoder.pretoken_list(part):
                r = row.get(w.decode("utf-8"))
                rebuilt += flat[offsets[r] : offsets[r + 1]] if r is not None else [-1]
        if " ".join(map(str, rebuilt)) != line:
            die(
                f"{train_path}: the pre-token table does not rebuild the ids of the first documents; "
                f"set encoder: tokenizers in configs/analyze.yaml"
            )


def frequency_table(tokenizer, counts, doc_counts, n_tokens):
    """Every id, zeros included: token_id, token, count, doc_count, frequency."""
    import pandas as pd

    tokens = [None] * VOCAB_SIZE
    for token, i in tokenizer.get_vocab(with_added_tokens=True).items():
        tokens[i] = token
    return pd.DataFrame(
        {
            "token_id": np.arange(VOCAB_SIZE, dtype=np.int64),
            "token": tokens,
            "count": counts,
            "doc_count": doc_counts,
            "frequency": counts / max(n_tokens, 1),
        }
    )


def main():
    args = parse_step_args("analyze", __doc__)
    art = Artifacts(args.artifacts)
    cfg = step_config("analyze", args)
    setup_logging(STEP, art.log_file(STEP))
    train_path = require(art.train_docs, "corpus")
    tokenizer_json = art.original_tokenizer / "tokenizer.json"
    encoder = Encoder(
        cfg["encoder"],
        tokenizer_json,
        load_gpt2_tokenizer(art.original_tokenizer, expect_model="BPE"),
    )
    workers = cfg["workers"] or os.cpu_count() or 1

    # 1. encode the corpus: the id lines, counts per id, the workers' pre-token counts
    t0 = time.perf_counter()
    with atomic_path(art.bpe_sequences) as seq_tmp, atomic_path(art.token_frequency) as freq_tmp:
        with open(seq_tmp, "wb") as out:
            totals, parts = encode_corpus(train_path, cfg, encoder, workers, out)
        seconds_encode = time.perf_counter() - t0

        # 2. the pre-token table: merged counts, each distinct pre-token's BPE ids, checked
        log.info("building the pre-token table")
        text, level, counts, doc_counts = merge_pretokens(parts)
        del parts
        ids_flat, ids_offsets = pretoken_ids(encoder, text)
        table = {"text": text, "ids_flat": ids_flat, "ids_offsets": ids_offsets}
        n_eot = int(totals["counts"][EOT_ID])
        if int((np.diff(ids_offsets) * counts).sum()) + n_eot != totals["tokens"]:
            die(
                f"{train_path}: the pre-token table does not add up to the {totals['tokens']:,} tokens; "
                f"set encoder: tokenizers in configs/analyze.yaml"
            )
        log.info(f"checking against tokenizers on the first {cfg['check_bytes']:,} bytes")
        check_against_tokenizers(train_path, seq_tmp, encoder, table, cfg["check_bytes"])
        meta = {
            "tokenizer_sha256": sha256_file(tokenizer_json),
            "train_bytes": train_path.stat().st_size,
            "documents": totals["documents"],
            "occurrences": int(counts.sum()),
            "tokens": totals["tokens"],
            "endoftext": n_eot,
            "encoder": cfg["encoder"],
        }
        write_pretoken_table(
            art.pretoken_table, level, counts, doc_counts, ids_flat, ids_offsets, meta
        )
        frequency_table(
            encoder.reference, totals["counts"], totals["doc_counts"], totals["tokens"]
        ).to_parquet(freq_tmp, index=False)
    seconds = time.perf_counter() - t0

    # 3. the summary
    write_summary(art, totals, len(text), int(counts.sum()), seconds, seconds_encode)
    save_config(cfg, art.reports / f"{STEP}.config.yaml", STEP, args.profile)


def write_summary(art, totals, n_distinct, n_occurrences, seconds, seconds_encode):
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_bytes, n_tokens = totals["bytes"], totals["tokens"]
    summary = {
        "documents": totals["documents"],
        "bytes": n_bytes,
        "tokens": n_tokens,
        "tokens_per_byte": n_tokens / max(n_bytes, 1),
        "distinct_tokens_used": int((totals["counts"] > 0).sum()),
        "pretoken_occurrences": n_occurrences,
        "distinct_pretokens": n_distinct,
        "seconds": round(seconds, 3),
        "mb_per_s": round(n_bytes / 1e6 / seconds, 2),
        "seconds_encode": round(seconds_encode, 3),
        "peak_rss_mb": round(peak_rss_mb, 1),
    }
    write_json(art.reports / "analyze_summary.json", summary)
    log.info(
        f"{summary['documents']:,} documents, {n_bytes:,} bytes -> {n_tokens:,} tokens "
        f"({summary['tokens_per_byte']:.3f} tokens/byte, {summary['distinct_tokens_used']:,} distinct ids); "
        f"{n_occurrences:,} pre-tokens, {n_distinct:,} distinct"
    )
    log.info(
        f"{summary['mb_per_s']} MB/s ({seconds_encode:.1f} s encoding, {seconds:.1f} s in all), peak RSS {peak_rss_mb:,.0f} MB"
    )


if __name__ == "__main__":
    main()
