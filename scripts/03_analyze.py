"""
03 analyze: tokenise the train split with GPT-2's BPE; count every token.

    .venv/bin/python scripts/03_analyze.py [--batch-docs 512]
    make artifacts/analysis/reports/token_frequency.parquet        (alias: make analyze)

Writes to artifacts/analysis/reports/:
  bpe_token_id_sequences.txt  one train document per line, its GPT-2 ids separated by spaces
  token_frequency.parquet     token_id, token, count, doc_count, frequency -- all 50,257 ids, zeros included
  analyze_summary.json        documents, bytes, tokens, throughput, peak memory
Streams the corpus in batches (memory does not grow with it); each batch is encoded on all cores.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import load_config, save_config
from lib.files import atomic_path, require, write_json
from lib.log import die, log, setup_logging
from lib.paths import DEFAULT_ARTIFACTS, Artifacts
from lib.tokenizer import VOCAB_SIZE, load_gpt2_tokenizer

STEP = "03_analyze"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-docs", type=int)
    p.add_argument("--batch-bytes", type=int)
    p.add_argument("--artifacts", default=str(DEFAULT_ARTIFACTS), help="artifacts root (Make: ARTIFACTS=)")
    p.add_argument("--profile", default="default", help="config profile (Make: PROFILE=)")
    p.add_argument("--configs", default=None, help="configs directory (default: configs/)")
    return p.parse_args()


def batches(path, batch_docs, batch_bytes):
    """Yield lists of document texts from a cleaned jsonl file, bounded in count and bytes."""
    batch, n_bytes = [], 0
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                die(f"{path}:{line_no}: not a cleaned-corpus record; re-run `make corpus`")
            batch.append(text)
            n_bytes += len(line)
            if len(batch) >= batch_docs or n_bytes >= batch_bytes:
                yield batch, n_bytes
                batch, n_bytes = [], 0
    if batch:
        yield batch, n_bytes


def main():
    args = parse_args()
    art = Artifacts(args.artifacts)
    cfg = load_config("analyze", args.profile, args.configs, {"batch_docs": args.batch_docs, "batch_bytes": args.batch_bytes})
    setup_logging(STEP, art.log_file(STEP))
    for key in ("batch_docs", "batch_bytes"):
        if cfg[key] < 1:
            die(f"configs/analyze.yaml: {key} must be at least 1, got {cfg[key]}")
    train_path = require(art.train_docs, "corpus")
    tokenizer = load_gpt2_tokenizer(art.original_tokenizer, expect_model="BPE")

    # --- encode in batches, write one line per document, count as we go
    counts = np.zeros(VOCAB_SIZE, dtype=np.int64)
    doc_counts = np.zeros(VOCAB_SIZE, dtype=np.int64)
    n_docs = n_bytes = n_tokens = 0
    total = train_path.stat().st_size
    t0 = time.perf_counter()
    art.reports.mkdir(parents=True, exist_ok=True)
    with atomic_path(art.bpe_sequences) as seq_tmp, atomic_path(art.token_frequency) as freq_tmp:
        with open(seq_tmp, "w", encoding="ascii") as out, tqdm(total=total, unit="B", unit_scale=True, desc="analyze") as bar:
            for texts, batch_size in batches(train_path, cfg["batch_docs"], cfg["batch_bytes"]):
                docs = [enc.ids for enc in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
                out.write("".join(" ".join(map(str, ids)) + "\n" for ids in docs))
                # one bincount per batch, not per document: short documents stay cheap
                arrays = [np.asarray(ids, dtype=np.int64) for ids in docs] + [np.zeros(0, np.int64)]
                counts += np.bincount(np.concatenate(arrays), minlength=VOCAB_SIZE)
                doc_counts += np.bincount(np.concatenate([np.unique(a) for a in arrays]), minlength=VOCAB_SIZE)
                n_tokens += sum(map(len, docs))
                n_docs += len(texts)
                n_bytes += sum(len(t.encode("utf-8")) for t in texts)
                bar.update(batch_size)
        seconds = time.perf_counter() - t0

        # --- the frequency table: every id, zeros included
        import pandas as pd
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        tokens = [None] * VOCAB_SIZE
        for token, i in vocab.items():
            tokens[i] = token
        table = pd.DataFrame({
            "token_id": np.arange(VOCAB_SIZE, dtype=np.int64),
            "token": tokens,
            "count": counts,
            "doc_count": doc_counts,
            "frequency": counts / max(n_tokens, 1),
        })
        table.to_parquet(freq_tmp, index=False)

    # --- summary
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {
        "documents": n_docs, "bytes": n_bytes, "tokens": n_tokens,
        "tokens_per_byte": n_tokens / max(n_bytes, 1),
        "distinct_tokens_used": int((counts > 0).sum()),
        "seconds": round(seconds, 3), "mb_per_s": round(n_bytes / 1e6 / seconds, 2),
        "peak_rss_mb": round(peak_rss_mb, 1),
    }
    write_json(art.reports / "analyze_summary.json", summary)
    save_config(cfg, art.reports / f"{STEP}.config.yaml", STEP, args.profile)
    log.info(f"{n_docs:,} documents, {n_bytes:,} bytes -> {n_tokens:,} tokens "
             f"({summary['tokens_per_byte']:.3f} tokens/byte, {summary['distinct_tokens_used']:,} distinct ids)")
    log.info(f"{summary['mb_per_s']} MB/s, peak RSS {peak_rss_mb:,.0f} MB")
    top = table.nlargest(5, "count")
    log.info("most frequent: " + ", ".join(f"{r.token!r} {r.count:,}" for r in top.itertuples()))


if __name__ == "__main__":
    main()
