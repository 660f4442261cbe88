"""
02 corpus: read raw documents, clean them, split them into train / held-out.

    .venv/bin/python scripts/02_corpus.py [--raw-dir DIR] [--heldout-ratio 0.1] [--max-bytes N]
    make artifacts/corpora/cleaned/train.jsonl        (alias: make corpus)

Reads artifacts/corpora/raw/ (.txt, .md: a document per file; .jsonl: one per line; .parquet: one per
row) or, by default, the Python standard library's source. Cleaning: newlines normalised to \\n,
exact duplicates, empty documents and binary / non-UTF-8 files dropped (counted and reported),
everything else byte-exact. Writes artifacts/corpora/cleaned/{train,heldout}.jsonl (one
{"id", "source", "text"} per line) and manifest.json (every source file: sha256, bytes, fate).
"""

import hashlib
import json
import sys
import sysconfig
from collections import Counter
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import parse_step_args, save_config, step_config
from lib.files import atomic_path, in_heldout, sha256_file, write_json
from lib.log import die, log, setup_logging
from lib.paths import Artifacts

STEP = "02_corpus"
STDLIB_TEST_DIRS = {"test", "tests", "idle_test"}


FLAGS = [("--raw-dir", {"help": "your corpus files (default: <artifacts>/corpora/raw)"})]


# -----------------------------------------------------------------------------
# sources


def stdlib_files(include_tests):
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [
        f
        for f in root.rglob("*.py")
        if "site-packages" not in f.parts and (include_tests or not STDLIB_TEST_DIRS & set(f.parts))
    ]
    # A hash order, so that max_bytes samples the whole library rather than its first letters.
    return root, sorted(
        files, key=lambda f: hashlib.sha256(str(f.relative_to(root)).encode()).hexdigest()
    )


def decode_text(data):
    """UTF-8 text of a file's bytes, or (None, reason)."""
    if b"\x00" in data[:8192]:
        return None, "binary"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 (byte {e.start:,})"


def read_documents(path, cfg):
    """Yield (text, where-in-file) for each document of one raw file.

    A file unreadable as a whole raises ValueError(reason) before any document, and is skipped.
    A bad line or row inside a file stops the step: skipping it would silently shrink the corpus."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        field = cfg["jsonl_text_field"]
        with open(path, "rb") as f:
            for line_no, raw_line in enumerate(f, 1):
                line, why = decode_text(raw_line)
                if why:
                    die(f"{path}:{line_no}: {why}; fix or remove that line")
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    die(f"{path}:{line_no}: not JSON ({e.msg}); fix or remove that line")
                if not isinstance(record, dict) or not isinstance(record.get(field), str):
                    die(
                        f"{path}:{line_no}: no string field '{field}'; set jsonl_text_field in configs/corpus.yaml"
                    )
                yield record[field], f":{line_no}"
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        column = cfg["parquet_text_column"]
        try:
            pf = pq.ParquetFile(path)
        except Exception as e:
            raise ValueError(f"unreadable parquet ({str(e).splitlines()[0][:80]})") from None
        if column not in pf.schema_arrow.names:
            die(
                f"{path}: no column '{column}' (has {pf.schema_arrow.names}); set parquet_text_column in configs/corpus.yaml"
            )
        row = 0
        try:
            for batch in pf.iter_batches(columns=[column], batch_size=1024):
                for text in batch.column(0).to_pylist():
                    row += 1
                    if text is not None:
                        yield text, f"#{row}"
        except (OSError, ValueError) as e:  # pyarrow's errors derive from these
            die(
                f"{path}: unreadable after row {row:,} ({str(e).splitlines()[0][:80]}); re-export it"
            )
    else:
        text, why = decode_text(path.read_bytes())
        if why:
            raise ValueError(why)
        yield text, ""


def normalise_newlines(text):
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -----------------------------------------------------------------------------
# phases


def pick_files(cfg, raw_dir):
    """(source, root, files, supported extensions): your files in raw_dir, or the stdlib source."""
    raw_files = (
        sorted(f for f in raw_dir.rglob("*") if f.is_file() and not f.name.startswith("."))
        if raw_dir.is_dir()
        else []
    )
    source = cfg["source"]
    if source == "auto":
        source = "raw" if raw_files else "stdlib"
    if source == "raw":
        if not raw_files:
            die(
                f"{raw_dir}: no corpus files; put .txt/.md/.jsonl/.parquet files there or set source: stdlib"
            )
        root, files, supported = (
            raw_dir,
            raw_files,
            set(cfg["text_extensions"]) | {".jsonl", ".parquet"},
        )
    else:
        (root, files), supported = stdlib_files(cfg["stdlib_include_tests"]), {".py"}
        log.info(f"default corpus: Python {sys.version.split()[0]} standard library at {root}")
    log.info(f"corpus source: {source}, {len(files):,} files under {root}")
    return source, root, files, supported


class Split:
    """The train and held-out outputs being written: documents kept, their bytes, and which were seen."""

    def __init__(self, out_dir, cfg):
        self.cfg, self.seen = cfg, set()
        self.outs = {
            split: open(out_dir / f"{split}.jsonl", "w", encoding="utf-8")
            for split in ("train", "heldout")
        }
        self.totals = {split: [0, 0] for split in self.outs}  # documents, bytes
        self.kept_bytes = 0

    def full(self):
        return self.kept_bytes >= self.cfg["max_bytes"] > 0

    def add(self, text, source):
        """Keep one document (newlines normalised) unless empty or a duplicate; returns its fate and bytes."""
        text = normalise_newlines(text)
        if not text.strip():
            return "empty", 0
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest in self.seen:
            return "duplicate", 0
        self.seen.add(digest)
        split = (
            "heldout"
            if in_heldout(digest, self.cfg["split_seed"], self.cfg["heldout_ratio"])
            else "train"
        )
        self.outs[split].write(
            json.dumps({"id": digest[:16], "source": source, "text": text}, ensure_ascii=False)
            + "\n"
        )
        n_bytes = len(text.encode("utf-8"))
        self.totals[split][0] += 1
        self.totals[split][1] += n_bytes
        self.kept_bytes += n_bytes
        return "kept", n_bytes

    def close(self):
        for f in self.outs.values():
            f.close()


def read_file(path, rel, cfg, split, bar, fates):
    """Add one file's documents to the split; its manifest entry (sha256, bytes, fate, documents)."""
    entry = {"path": rel, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if split.full():
        fates["file not read: max_bytes reached"] += 1
        return {**entry, "fate": "not read: max_bytes reached"}
    if path.suffix.lower() not in cfg["supported"]:
        fates["file rejected: unsupported extension"] += 1
        log.warning(f"warning: {path}: skipped, unsupported extension")
        return {
            **entry,
            "fate": f"rejected: unsupported extension (supported: {sorted(cfg['supported'])})",
        }
    counts = Counter()
    try:
        for text, where in read_documents(path, cfg):
            fate, n_bytes = split.add(text, rel + where)
            counts[fate] += 1
            bar.update(min(n_bytes, bar.total_here - bar.n))
            if split.full():
                break
    except ValueError as e:
        if cfg["strict"]:
            die(f"{path}: {e}; fix or remove it (or set strict: false to skip such files)")
        fates[f"file rejected: {str(e).split(' (')[0].split(':')[0]}"] += 1
        log.warning(f"warning: {path}: skipped, {e}")
        return {**entry, "fate": f"rejected: {e}"}
    for reason, n in counts.items():
        fates[f"document {reason}"] += n
    return {
        **entry,
        "documents": dict(counts),
        "fate": "kept" if counts["kept"] else "no document kept",
    }


def clean_and_split(files, root, cfg, out_dir):
    """Stream every file into out_dir/{train,heldout}.jsonl; (totals, fates, manifest entries)."""
    split, fates, entries = Split(out_dir, cfg), Counter(), []
    bar = tqdm(
        total=sum(f.stat().st_size for f in files),
        desc="corpus",
        unit="B",
        unit_scale=True,
        mininterval=1,
    )
    bar.total_here = 0  # the bar's position at the end of the current file
    for path in files:
        bar.update(bar.total_here - bar.n)  # per file, and inside a file per document kept
        bar.total_here += path.stat().st_size
        entries.append(read_file(path, str(path.relative_to(root)), cfg, split, bar, fates))
    bar.update(bar.total_here - bar.n)
    bar.close()
    split.close()
    n_docs = sum(d for d, _ in split.totals.values())
    if n_docs == 0:
        die(f"{root}: no document survived cleaning ({dict(fates)}); see the log")
    for name, (docs, _) in split.totals.items():
        if docs == 0:
            die(
                f"{root}: the {name} split is empty ({n_docs:,} documents); add documents or change heldout_ratio"
            )
    return split.totals, fates, entries


def main():
    args = parse_step_args("corpus", __doc__, FLAGS)
    art = Artifacts(args.artifacts)
    cfg = step_config("corpus", args)
    setup_logging(STEP, art.log_file(STEP))

    # 1. which files
    source, root, files, supported = pick_files(
        cfg, Path(args.raw_dir) if args.raw_dir else art.raw
    )

    # 2. clean, dedupe and split, streaming into the output directory (renamed into place when complete)
    with atomic_path(art.cleaned) as tmp:
        tmp.mkdir(parents=True)
        totals, fates, entries = clean_and_split(files, root, {**cfg, "supported": supported}, tmp)
        manifest = {
            "source": source,
            "root": str(root),
            "python": sys.version.split()[0] if source == "stdlib" else None,
            "split": {
                "heldout_ratio": cfg["heldout_ratio"],
                "split_seed": cfg["split_seed"],
                "by": "sha256 of document text",
            },
            "totals": {split: {"documents": d, "bytes": b} for split, (d, b) in totals.items()},
            "fates": dict(sorted(fates.items())),
            "files": entries,
        }
        write_json(tmp / "manifest.json", manifest)
        save_config(cfg, tmp / f"{STEP}.config.yaml", STEP, args.profile)

    # 3. what happened
    for split, (docs, n_bytes) in totals.items():
        log.info(f"{split}: {docs:,} documents, {n_bytes:,} bytes")
    for fate, n in sorted(fates.items()):
        log.info(f"  {fate}: {n:,}")
    log.info(f"wrote {art.cleaned}")


if __name__ == "__main__":
    main()
