"""The pre-token table: every distinct GPT-2 pre-token of the train split, the interface after 03.

03 writes it while it encodes (artifacts/analysis/reports/pretoken_table.parquet); 04 learns from it and 05
takes its candidate strings from it, so neither re-reads the corpus. Its size follows the *distinct*
pre-tokens (Heaps' law: ~230 k for 160 MB of code), not the corpus bytes.

Columns (one row per distinct pre-token, most frequent first, ties by pre-token):
  pretoken   string        byte-level form, as GPT-2's vocab spells it (Ġ = space, Ċ = newline)
  count      int64         occurrences in the train split
  doc_count  int64         train documents holding it at least once
  bpe_ids    list<int32>   GPT-2's BPE ids of it (the concatenation of their strings is `pretoken`)
`<|endoftext|>` is a special token, never a pre-token: it is not in the table (its count is in the
metadata). The schema metadata `gpt2ivr` (JSON) holds kind, version, the sha256 of the tokenizer.json
that made it, and totals (documents, occurrences, tokens).

    >>> table = read_pretoken_table(path, tokenizer_json=orig / "tokenizer.json")
    >>> table.pretokens[0], int(table.counts[0]), table.ids(0)
    ('.', 83189, (13,))            # the stdlib train split
"""

import json
import warnings
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from lib.files import atomic_path, require, sha256_file
from lib.log import die
from lib.tokenizer import VOCAB_SIZE

KIND = "pretoken_table"
VERSION = 1
META_KEY = b"gpt2ivr"
COLUMNS = ("pretoken", "count", "doc_count", "bpe_ids")
MAKE_TARGET = "analyze"  # the step that writes it


@dataclass
class PretokenTable:
    """The table in flat arrays: row k is pretokens[k], counts[k], doc_counts[k], ids(k)."""

    pretokens: list
    counts: np.ndarray
    doc_counts: np.ndarray
    ids_flat: np.ndarray  # int32, every row's BPE ids back to back
    ids_offsets: (
        np.ndarray
    )  # int64, len(rows) + 1: row k's ids are ids_flat[offsets[k]:offsets[k + 1]]
    meta: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.pretokens)

    def ids(self, k):
        """Row k's GPT-2 BPE ids as a tuple."""
        return tuple(self.ids_flat[self.ids_offsets[k] : self.ids_offsets[k + 1]].tolist())

    def all_ids(self):
        """Every row's ids as tuples (one pass; for loops over all rows)."""
        flat = self.ids_flat.tolist()
        offsets = self.ids_offsets.tolist()
        return [tuple(flat[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]


def write_pretoken_table(path, pretokens, counts, doc_counts, ids_flat, ids_offsets, meta):
    """Write the table atomically (temp + rename), rows in the order given."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = pa.ListArray.from_arrays(
        pa.array(np.asarray(ids_offsets, dtype=np.int32)),
        pa.array(np.asarray(ids_flat, dtype=np.int32)),
    )
    table = pa.table(
        {
            "pretoken": pa.array(pretokens, type=pa.string()),
            "count": pa.array(np.asarray(counts, dtype=np.int64)),
            "doc_count": pa.array(np.asarray(doc_counts, dtype=np.int64)),
            "bpe_ids": ids,
        }
    )
    full_meta = {"kind": KIND, "version": VERSION, **meta}
    table = table.replace_schema_metadata({META_KEY: json.dumps(full_meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=1 << 20)


def table_meta(path):
    """The table's metadata dict; dies with the fix when the file is not a complete pre-token table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = require(path, MAKE_TARGET)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        die(
            f"{path}: not a readable parquet file (truncated? {str(e).splitlines()[0]}); re-run `make {MAKE_TARGET}`"
        )
    raw = (schema.metadata or {}).get(META_KEY)
    try:
        meta = json.loads(raw) if raw else {}
    except ValueError:
        meta = {}
    if meta.get("kind") != KIND or any(c not in schema.names for c in COLUMNS):
        die(f"{path}: not a pre-token table written by 03 analyze; re-run `make {MAKE_TARGET}`")
    if meta.get("version") != VERSION:
        die(
            f"{path}: pre-token table version {meta.get('version')}, this code reads {VERSION}; re-run `make {MAKE_TARGET}`"
        )
    return meta


def read_pretoken_table(path, tokenizer_json=None, columns=COLUMNS):
    """Read and check the table. With tokenizer_json, it must have been made by that tokenizer."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    meta = table_meta(path)
    if tokenizer_json is not None and meta.get("tokenizer_sha256") != sha256_file(tokenizer_json):
        die(
            f"{path}: made with another tokenizer than {tokenizer_json}; re-run `make {MAKE_TARGET}`"
        )
    try:
        table = pq.read_table(path, columns=list(columns))
    except (pa.ArrowException, OSError) as e:
        die(
            f"{path}: cannot be read (truncated? {str(e).splitlines()[0]}); re-run `make {MAKE_TARGET}`"
        )
    if (
        "occurrences" in meta
        and "count" in columns
        and int(pc.sum(table["count"]).as_py() or 0) != meta["occurrences"]
    ):
        die(
            f"{path}: counts do not add up to the {meta['occurrences']:,} occurrences it records; re-run `make {MAKE_TARGET}`"
        )
    pretokens = table["pretoken"].to_pylist() if "pretoken" in columns else []
    counts = table["count"].to_numpy() if "count" in columns else np.zeros(0, np.int64)
    doc_counts = table["doc_count"].to_numpy() if "doc_count" in columns else np.zeros(0, np.int64)
    if "bpe_ids" in columns:
        ids = table["bpe_ids"].combine_chunks()
        ids_flat = ids.values.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        ids_offsets = ids.offsets.to_numpy().astype(np.int64)
    else:
        ids_flat, ids_offsets = np.zeros(0, np.int32), np.zeros(1, np.int64)
    return PretokenTable(pretokens, counts, doc_counts, ids_flat, ids_offsets, meta)


def read_table(art):
    """The pre-token table of art (lib.paths.Artifacts), checked to be complete and made by this run's original tokenizer."""
    table = read_pretoken_table(
        art.pretoken_table, tokenizer_json=art.original_tokenizer / "tokenizer.json"
    )
    if not len(table):
        die(f"{art.pretoken_table}: no pre-tokens (empty train split?); re-run `make analyze`")
    if table.ids_flat.size and (table.ids_flat.min() < 0 or table.ids_flat.max() >= VOCAB_SIZE):
        die(
            f"{art.pretoken_table}: BPE id out of range 0..{VOCAB_SIZE - 1:,}; re-run `make analyze`"
        )
    return table


# -----------------------------------------------------------------------------
# bpe_token_id_sequences.txt: one line of GPT-2 ids per train document; a deterministic sample of it


def parse_id_line(line):
    """The ids of one line of bpe_token_id_sequences.txt as int64, or None unless it is space-separated ints."""
    with warnings.catch_warnings():
        warnings.simplefilter(
            "error"
        )  # numpy only warns when it stops at a character that is no number
        try:
            ids = np.fromstring(line, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    return ids if ids.size == line.count(b" ") + 1 else None


def sample_lines(n_docs, size):
    """Line numbers (0-based) of the document sample: evenly spaced over the split, all when size >= n_docs."""
    if size >= n_docs:
        return list(range(n_docs))
    return sorted({k * n_docs // size for k in range(size)})


def sample_documents(path, n_docs, size, max_bytes, id_bytes):
    """Stream bpe_token_id_sequences.txt and keep the sampled documents: (texts, ids as int32 arrays, facts).
    A sampled line longer than max_bytes is left out (counted), so a huge document costs one line of bytes."""
    wanted = sample_lines(n_docs, size)
    texts, ids_list, too_long, want, line_no = [], [], 0, iter(wanted), -1
    nxt = next(want, None)
    with (
        open(path, "rb") as f,
        tqdm(
            total=n_docs, desc="train document sample", unit="doc", mininterval=1, leave=False
        ) as bar,
    ):
        for line_no, line in enumerate(f):
            bar.update()
            if not line.endswith(b"\n"):
                bar.close()  # the error line must not share a line with the bar
                die(
                    f"{path}:{line_no + 1:,}: last line has no newline (file truncated?); re-run `make analyze`"
                )
            if line_no != nxt:
                continue
            nxt = next(want, None)
            if len(line) > max_bytes:
                too_long += 1
                continue
            ids, problem = parse_document(line, id_bytes)
            if problem:
                bar.close()  # the error line must not share a line with the bar
                die(f"{path}:{line_no + 1:,}: {problem}; re-run `make analyze`")
            texts.append(ids[1])
            ids_list.append(ids[0])
    if line_no + 1 != n_docs:
        die(
            f"{path}: {line_no + 1:,} documents, the pre-token table counts {n_docs:,}; re-run `make analyze`"
        )
    return (
        texts,
        ids_list,
        {"documents_in_split": n_docs, "sampled": len(wanted), "left_out_too_long": too_long},
    )


def parse_document(line, id_bytes):
    """((ids as int32, text), None) for one line of bpe_token_id_sequences.txt, or (None, what is wrong)."""
    if line == b"\n":
        return None, "empty line (no document has zero tokens)"
    ids = parse_id_line(line[:-1])
    if ids is None:
        return None, "not a line of space-separated token ids"
    if ids.min() < 0 or ids.max() >= VOCAB_SIZE:
        return None, f"id out of range 0..{VOCAB_SIZE - 1:,}"
    try:
        text = b"".join([id_bytes[i] for i in ids.tolist()]).decode("utf-8")
    except UnicodeDecodeError:
        return None, "ids do not decode to UTF-8 text (truncated line?)"
    return (ids.astype(np.int32), text), None
