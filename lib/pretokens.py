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
from dataclasses import dataclass, field

import numpy as np

from lib.files import atomic_path, require, sha256_file
from lib.log import die

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
