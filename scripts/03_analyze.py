"""
03 analyze: tokenise the train split with GPT-2's BPE; count every token.

    .venv/bin/python scripts/03_analyze.py [--batch-docs 512]
    make artifacts/analysis/reports/token_frequency.parquet        (alias: make analyze)

Writes to artifacts/analysis/reports/:
  bpe_token_id_sequences.txt  one train document per line, its GPT-2 ids separated by spaces
  token_frequency.parquet     token_id, token, count, doc_count, frequency -- all 50,257 ids, zeros included
  analyze_summary.json        documents, bytes, tokens, throughput, peak memory
Streams the corpus in batches (memory does not grow with it), encoded on all cores.

The fast path (fast_path: true) computes exactly GPT-2's BPE, faster than tokenizers' encode: a text is cut
into chunks (a whitespace run and the non-space run after it) that no pre-token crosses, each distinct
chunk is encoded once (GPT-2's own regex, then BPE by the tokenizer's own model) and cached as the text of
its ids, and worker processes take whole batches. The first documents (check_bytes) are checked against
tokenizers' encode, and a difference stops the step.
"""

import argparse
import collections
import ctypes
import itertools
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
from lib.config import load_config, save_config
from lib.files import atomic_path, require, write_json
from lib.log import die, log, setup_logging
from lib.paths import DEFAULT_ARTIFACTS, Artifacts
from lib.tokenizer import EOT, EOT_ID, GPT2_PATTERN, VOCAB_SIZE, load_gpt2_tokenizer, to_byte_level

STEP = "03_analyze"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-docs", type=int)
    p.add_argument("--batch-bytes", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--fast-path", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--artifacts", default=str(DEFAULT_ARTIFACTS), help="artifacts root (Make: ARTIFACTS=)")
    p.add_argument("--profile", default="default", help="config profile (Make: PROFILE=)")
    p.add_argument("--configs", default=None, help="configs directory (default: configs/)")
    return p.parse_args()


def batches(path, batch_docs, batch_bytes, workers=1, smallest=64_000):
    """Yield lists of document texts from a cleaned jsonl file, bounded in count and bytes. The first batches
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
                limit = min(batch_bytes, smallest << k, max(smallest, (total - done) // (2 * workers)))
    if batch:
        yield batch, n_bytes


# -----------------------------------------------------------------------------
# encoding a batch: ids as text lines, counts per id, documents per id


def distinct_ids(ids):
    """The distinct ids of one document: a sort when it is short, else a mask over the vocab (faster)."""
    if len(ids) <= 256:
        return np.unique(ids)
    mask = np.zeros(VOCAB_SIZE, dtype=bool)
    mask[ids] = True
    return np.flatnonzero(mask)


def batch_result(lines, arrays):
    """(the text of bpe_token_id_sequences.txt, token counts, document counts, tokens): lines and id
    arrays of the same documents."""
    counts = np.bincount(np.concatenate(arrays + [np.zeros(0, np.int64)]), minlength=VOCAB_SIZE)
    doc_counts = np.bincount(np.concatenate(list(map(distinct_ids, arrays)) + [np.zeros(0, np.int64)]), minlength=VOCAB_SIZE)
    return "".join(line + "\n" for line in lines), counts, doc_counts, int(counts.sum())


def encoded_result(docs):
    """batch_result of documents given as id lists (the tokenizers path)."""
    return batch_result([" ".join(map(str, ids)) for ids in docs], [np.asarray(ids, dtype=np.int64) for ids in docs])


def values(table, keys):
    """[table[k] for k in keys], looked up in one C loop."""
    return operator.itemgetter(*keys)(table) if len(keys) > 1 else [table[k] for k in keys]


class FastGPT2:
    """GPT-2 BPE of whole batches: the same ids as tokenizers' encode, with little Python work per token.

    No GPT-2 pre-token holds a non-space followed by a whitespace character (no branch of the pattern
    matches one), so a text cuts into chunks -- a whitespace run and the non-space run after it -- that
    tokenize on their own exactly as inside the text. Each distinct chunk's ids are cached as text, and a
    document's line is the join of its chunks'. A document's new chunks are encoded together: joined by a
    separator that the pre-tokenizer pattern keeps as a pre-token of its own and treats as the end of a
    text, so one regex call splits them all and one join of the pre-tokens' ids splits back into the
    chunks'. The pattern is GPT-2's, run by the `regex` module (as in OpenAI's encoder.py), or on ASCII
    text the same pattern with its classes cut to ASCII for the stdlib `re` (twice as fast, and equal there
    by construction); each new pre-token is BPE-encoded once by the tokenizer's own model, or is a vocab
    entry and its own id. Counts are read back from the lines by numpy."""

    SEP = "\x00"  # a text that holds it itself is encoded chunk by chunk, without the separator

    def __init__(self, model, max_cache=1_000_000):
        import re

        import regex

        every = "".join(map(chr, range(0x110000)))
        ws = "".join(regex.findall(r"\s", every))  # exactly the pattern's \s, from the regex module's tables
        ws_class = "[" + "".join(f"\\U{ord(c):08x}" for c in ws) + "]"
        # possessive repeats (*+, ++) where nothing after them could make them give back: the same matches,
        # without saving backtracking state (1.5% fewer instructions in the workers)
        self.chunk_pattern = re.compile(f"{ws_class}*+[^{ws_class[1:]}++|{ws_class}++")  # stdlib re: C speed
        self.pattern = regex.compile(GPT2_PATTERN)
        possessive = (GPT2_PATTERN.replace(r"\p{L}+|", r"\p{L}++|").replace(r"\p{N}+|", r"\p{N}++|")
                      .replace(r"\p{N}]+|", r"\p{N}]++|").removesuffix(r"|\s+") + r"|\s++")
        # the separator: its own pre-token, in no class, and like the end of the text to the lookahead
        separated = r"\x00|" + (possessive.replace(r"[^\s\p{L}\p{N}]", r"[^\s\p{L}\p{N}\x00]")
                                 .replace(r"(?!\S)", r"(?![^\s\x00])"))
        self.separated_pattern = regex.compile(separated)
        # the same for the stdlib `re` on ASCII text: \s, \p{L}, \p{N} cut to their ASCII members
        ascii_separated = separated
        for prop in (r"\s", r"\p{L}", r"\p{N}"):
            members = "".join(f"\\x{ord(c):02x}" for c in regex.findall(prop, every[:128]))
            ascii_separated = ascii_separated.replace(prop + "+", f"[{members}]+").replace(prop, members)  # out of / in a class
        self.separated_ascii_pattern = re.compile(ascii_separated)
        self.model, self.max_cache = model, max_cache
        self.chunk_text, self.word_text = {}, {self.SEP: "|"}  # chunk / pre-token -> "id id ..."
        # a pre-token that is a vocab entry is its own id, if BPE gives every entry back whole (GPT-2's does;
        # another BPE with GPT-2's size might not, and then each goes through BPE)
        entries = itertools.takewhile(lambda token: token is not None, map(model.id_to_token, itertools.count()))
        self.entries_whole = all(token == EOT or len(model.tokenize(token)) == 1 for token in entries)

    def piece_ids(self, piece):
        """A byte-level pre-token's ids as text."""
        whole = self.model.token_to_id(piece) if self.entries_whole else None
        return str(whole) if whole is not None else " ".join([str(t.id) for t in self.model.tokenize(piece)])

    def add_chunks(self, chunks):
        """Encode new chunks (a list): ASCII ones and the others each in one regex call."""
        joined = self.SEP.join(chunks)
        if joined.count(self.SEP) != len(chunks) - 1:  # a chunk holds the separator itself
            for chunk in chunks:
                pieces = map(to_byte_level, self.pattern.findall(chunk))
                self.chunk_text[chunk] = " " + " ".join(map(self.piece_ids, pieces))
            return
        if joined.isascii():
            groups = [(chunks, joined, self.separated_ascii_pattern)]
        else:
            ascii_chunks = [c for c in chunks if c.isascii()]
            other = [c for c in chunks if not c.isascii()]
            groups = [(ascii_chunks, self.SEP.join(ascii_chunks), self.separated_ascii_pattern),
                      (other, self.SEP.join(other), self.separated_pattern)]
        for group, text, pattern in groups:
            if not group:
                continue
            words = pattern.findall(text)
            new = list(set(words).difference(self.word_text))
            if new:  # no pre-token here holds the separator: map them to byte-level in one call
                pieces = to_byte_level(self.SEP.join(new)).split(to_byte_level(self.SEP))
                self.word_text.update(zip(new, map(self.piece_ids, pieces), strict=True))
            # " a b | c | d e" -> " a b", " c", " d e": each chunk's ids, with the leading space a line joins on
            self.chunk_text.update(zip(group, (" " + " ".join(values(self.word_text, words))).split(" |")))

    def line(self, text):
        """The document's ids as one line of text."""
        parts = []
        for part in text.split(EOT):  # the special token, as tokenizers splits on it
            chunks = self.chunk_pattern.findall(part)
            new = set(chunks).difference(self.chunk_text)
            if new:
                self.add_chunks(list(new))
            parts.append("".join(values(self.chunk_text, chunks)))
        return f" {EOT_ID}".join(parts)[1:]

    def encode_batch(self, texts):
        """batch_result of texts."""
        if len(self.chunk_text) > self.max_cache or len(self.word_text) > self.max_cache:  # bounded memory
            self.chunk_text.clear()
            self.word_text.clear()
            self.word_text[self.SEP] = "|"
        lines = [self.line(text) for text in texts]
        return batch_result(lines, [np.fromstring(line, dtype=np.int64, sep=" ") for line in lines])

    def encode(self, text):
        return [int(t) for t in self.line(text).split()]


def first_docs(texts, max_bytes):
    """The first texts, up to max_bytes of UTF-8 (at least one)."""
    out, size = [], 0
    for t in texts:
        n = len(t.encode("utf-8"))
        if out and size + n > max_bytes:
            break
        out.append(t)
        size += n
    return out


_worker = {}


def _start_worker():
    with_parent = getattr(ctypes.CDLL(None), "prctl", None)  # Linux: die with the step (kill -9 included)
    if with_parent is not None:
        with_parent(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle


def _encode_in_worker(texts):
    return _worker["encoder"].encode_batch(texts)


def main():
    args = parse_args()
    art = Artifacts(args.artifacts)
    cfg = load_config("analyze", args.profile, args.configs, {"batch_docs": args.batch_docs, "batch_bytes": args.batch_bytes,
                                                              "workers": args.workers, "fast_path": args.fast_path})
    setup_logging(STEP, art.log_file(STEP))
    for key, least in (("batch_docs", 1), ("batch_bytes", 1), ("workers", 0), ("check_bytes", 0)):
        if cfg[key] < least:
            die(f"configs/analyze.yaml: {key} must be at least {least}, got {cfg[key]}")
    train_path = require(art.train_docs, "corpus")
    tokenizer = load_gpt2_tokenizer(art.original_tokenizer, expect_model="BPE")

    # --- encode in batches, write one line per document, count as we go
    counts = np.zeros(VOCAB_SIZE, dtype=np.int64)
    doc_counts = np.zeros(VOCAB_SIZE, dtype=np.int64)
    n_docs = n_bytes = n_tokens = 0
    total = train_path.stat().st_size
    art.reports.mkdir(parents=True, exist_ok=True)
    workers = cfg["workers"] or os.cpu_count() or 1
    if cfg["fast_path"]:  # built once here, before the clock starts (like the tokenizer); the workers inherit it
        _worker["encoder"] = FastGPT2(tokenizer.model)
    t0 = time.perf_counter()
    pool = multiprocessing.get_context("fork").Pool(workers, _start_worker) if cfg["fast_path"] else None
    with atomic_path(art.bpe_sequences) as seq_tmp, atomic_path(art.token_frequency) as freq_tmp:
        with open(seq_tmp, "w", encoding="ascii") as out, tqdm(total=total, unit="B", unit_scale=True, desc="analyze") as bar:
            pending = collections.deque()  # batches in the workers, in order; at most 2 per worker

            def take(job, check, line_bytes):
                nonlocal n_tokens
                lines, c, d, n = job.get() if pool else job
                if check:  # the fast path must be tokenizers' GPT-2 BPE, exactly: compare the first documents
                    reference = [e.ids for e in tokenizer.encode_batch_fast(check, add_special_tokens=False)]
                    if lines.split("\n")[:len(check)] != [" ".join(map(str, ids)) for ids in reference]:
                        die(f"{train_path}: the fast path's ids differ from tokenizers' GPT-2 BPE in the first "
                            f"{len(check):,} documents; set fast_path: false in configs/analyze.yaml")
                out.write(lines)
                counts[:] += c
                doc_counts[:] += d
                n_tokens += n
                bar.update(line_bytes)

            try:
                for k, (texts, line_bytes) in enumerate(batches(train_path, cfg["batch_docs"], cfg["batch_bytes"], workers)):
                    n_docs += len(texts)
                    n_bytes += sum(len(t.encode("utf-8")) for t in texts)
                    if pool:
                        check = first_docs(texts, cfg["check_bytes"]) if k == 0 else None
                        pending.append((pool.apply_async(_encode_in_worker, (texts,)), check, line_bytes))
                        while len(pending) > 2 * workers:
                            take(*pending.popleft())
                    else:
                        docs = [enc.ids for enc in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
                        take(encoded_result(docs), None, line_bytes)
                while pending:
                    take(*pending.popleft())
            finally:
                if pool:
                    pool.terminate()
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
