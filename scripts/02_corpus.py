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

import argparse
import hashlib
import json
import sys
import sysconfig
from collections import Counter
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import add_step_flags, save_config, step_config
from lib.files import atomic_path, sha256_file, write_json
from lib.log import die, log, setup_logging
from lib.paths import Artifacts

STEP = "02_corpus"
STDLIB_TEST_DIRS = {"test", "tests", "idle_test"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw-dir", help="your corpus files (default: <artifacts>/corpora/raw)")
    add_step_flags(p, "corpus")
    return p.parse_args()


# -----------------------------------------------------------------------------
# sources


def stdlib_files(include_tests):
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [f for f in root.rglob("*.py")
             if "site-packages" not in f.parts and (include_tests or not STDLIB_TEST_DIRS & set(f.parts))]
    # A hash order, so that max_bytes samples the whole library rather than its first letters.
    return root, sorted(files, key=lambda f: hashlib.sha256(str(f.relative_to(root)).encode()).hexdigest())


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
                    die(f"{path}:{line_no}: no string field '{field}'; set jsonl_text_field in configs/corpus.yaml")
                yield record[field], f":{line_no}"
    elif suffix == ".parquet":
        import pyarrow.parquet as pq
        column = cfg["parquet_text_column"]
        try:
            pf = pq.ParquetFile(path)
        except Exception as e:
            raise ValueError(f"unreadable parquet ({str(e).splitlines()[0][:80]})")
        if column not in pf.schema_arrow.names:
            die(f"{path}: no column '{column}' (has {pf.schema_arrow.names}); set parquet_text_column in configs/corpus.yaml")
        row = 0
        try:
            for batch in pf.iter_batches(columns=[column], batch_size=1024):
                for text in batch.column(0).to_pylist():
                    row += 1
                    if text is not None:
                        yield text, f"#{row}"
        except (OSError, ValueError) as e:  # pyarrow's errors derive from these
            die(f"{path}: unreadable after row {row:,} ({str(e).splitlines()[0][:80]}); re-export it")
    else:
        text, why = decode_text(path.read_bytes())
        if why:
            raise ValueError(why)
        yield text, ""


def normalise_newlines(text):
    return text.replace("\r\n", "\n").replace("\r", "\n")


def main():
    args = parse_args()
    art = Artifacts(args.artifacts)
    cfg = step_config("corpus", args)
    setup_logging(STEP, art.log_file(STEP))

    # --- which files
    raw_dir = Path(args.raw_dir) if args.raw_dir else art.raw
    raw_files = sorted(f for f in raw_dir.rglob("*") if f.is_file() and not f.name.startswith(".")) if raw_dir.is_dir() else []
    source = cfg["source"]
    if source == "auto":
        source = "raw" if raw_files else "stdlib"
    if source == "raw":
        if not raw_files:
            die(f"{raw_dir}: no corpus files; put .txt/.md/.jsonl/.parquet files there or set source: stdlib")
        root, files = raw_dir, raw_files
        supported = set(cfg["text_extensions"]) | {".jsonl", ".parquet"}
    elif source == "stdlib":
        root, files = stdlib_files(cfg["stdlib_include_tests"])
        supported = {".py"}
        log.info(f"default corpus: Python {sys.version.split()[0]} standard library at {root}")
    else:
        die(f"configs/corpus.yaml: source must be auto, raw or stdlib, got '{source}'")
    log.info(f"corpus source: {source}, {len(files):,} files under {root}")

    # --- clean, dedupe, split, streaming into the output directory
    seen = set()
    fates = Counter()
    manifest_files = []
    totals = {"train": [0, 0], "heldout": [0, 0]}  # documents, bytes
    kept_bytes = 0
    with atomic_path(art.cleaned) as tmp:
        tmp.mkdir(parents=True)
        outs = {split: open(tmp / f"{split}.jsonl", "w", encoding="utf-8") for split in totals}
        bar = tqdm(total=sum(f.stat().st_size for f in files), desc="corpus", unit="B", unit_scale=True, mininterval=1)
        done_bytes = 0
        for path in files:
            bar.update(done_bytes - bar.n)  # per file, and inside a file per document kept (below)
            done_bytes += path.stat().st_size
            rel = str(path.relative_to(root))
            entry = {"path": rel, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
            manifest_files.append(entry)
            if kept_bytes >= cfg["max_bytes"] > 0:
                entry["fate"] = "not read: max_bytes reached"
                fates["file not read: max_bytes reached"] += 1
                continue
            if path.suffix.lower() not in supported:
                entry["fate"] = f"rejected: unsupported extension (supported: {sorted(supported)})"
                fates["file rejected: unsupported extension"] += 1
                log.warning(f"warning: {path}: skipped, unsupported extension")
                continue
            counts = Counter()
            try:
                for text, where in read_documents(path, cfg):
                    text = normalise_newlines(text)
                    if not text.strip():
                        counts["empty"] += 1
                        continue
                    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
                    if digest in seen:
                        counts["duplicate"] += 1
                        continue
                    seen.add(digest)
                    u = int(hashlib.sha256(f"{cfg['split_seed']}:{digest}".encode()).hexdigest()[:16], 16) / 2**64
                    split = "heldout" if u < cfg["heldout_ratio"] else "train"
                    record = {"id": digest[:16], "source": rel + where, "text": text}
                    outs[split].write(json.dumps(record, ensure_ascii=False) + "\n")
                    n_bytes = len(text.encode("utf-8"))
                    totals[split][0] += 1
                    totals[split][1] += n_bytes
                    kept_bytes += n_bytes
                    counts["kept"] += 1
                    bar.update(min(n_bytes, done_bytes - bar.n))
                    if kept_bytes >= cfg["max_bytes"] > 0:
                        break
            except ValueError as e:
                if cfg["strict"]:
                    die(f"{path}: {e}; fix or remove it (or set strict: false to skip such files)")
                entry["fate"] = f"rejected: {e}"
                fates[f"file rejected: {str(e).split(' (')[0].split(':')[0]}"] += 1
                log.warning(f"warning: {path}: skipped, {e}")
                continue
            entry["documents"] = dict(counts)
            entry["fate"] = "kept" if counts["kept"] else "no document kept"
            for reason, n in counts.items():
                fates[f"document {reason}"] += n
        bar.update(done_bytes - bar.n)
        bar.close()
        for f in outs.values():
            f.close()

        n_docs = totals["train"][0] + totals["heldout"][0]
        if n_docs == 0:
            die(f"{root}: no document survived cleaning ({dict(fates)}); see {art.log_file(STEP)}")
        for split, (docs, _) in totals.items():
            if docs == 0:
                die(f"{root}: the {split} split is empty ({n_docs:,} documents); add documents or change heldout_ratio")

        manifest = {
            "source": source,
            "root": str(root),
            "python": sys.version.split()[0] if source == "stdlib" else None,
            "split": {"heldout_ratio": cfg["heldout_ratio"], "split_seed": cfg["split_seed"], "by": "sha256 of document text"},
            "totals": {split: {"documents": d, "bytes": b} for split, (d, b) in totals.items()},
            "fates": dict(sorted(fates.items())),
            "files": manifest_files,
        }
        write_json(tmp / "manifest.json", manifest)
        save_config(cfg, tmp / f"{STEP}.config.yaml", STEP, args.profile)

    for split, (docs, n_bytes) in totals.items():
        log.info(f"{split}: {docs:,} documents, {n_bytes:,} bytes")
    for fate, n in sorted(fates.items()):
        log.info(f"  {fate}: {n:,}")
    log.info(f"wrote {art.cleaned}")


if __name__ == "__main__":
    main()
