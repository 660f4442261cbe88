"""Atomic outputs (temp + rename, so a killed step never leaves a finished-looking file) and corpus docs."""

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

from lib.log import die

PARTIAL = ".partial"  # suffix of work in progress; never a Make target


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temp path beside `path`; on success rename it onto `path` (a file or a directory).

    A leftover temp from a killed run is removed first, so a re-run starts clean.
    """
    path = Path(path)
    tmp = path.with_name(path.name + PARTIAL)
    _remove(tmp)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir() and path.exists():
        old = path.with_name(path.name + ".old")
        _remove(old)
        os.replace(path, old)  # directories cannot be replaced in one rename
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def require(path, make_target=None):
    """Die with the fix when an upstream artifact is missing (scripts also run outside Make)."""
    path = Path(path)
    if not path.exists():
        how = f"run `make {make_target}`" if make_target else "run the upstream step"
        die(f"{path} is missing: {how} first")
    return path


def iter_docs(path, fix="re-run `make corpus`"):
    """Yield the text of each document of a cleaned-corpus jsonl file (one {"id", "source", "text"} per line);
    a line without a "text" stops with the fix."""
    path = require(path, "corpus")
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                yield json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                die(f'{path}:{line_no}: not a record with a "text"; {fix}')


def first_docs(texts, max_bytes):
    """(the first texts, up to max_bytes of UTF-8, whole documents and at least one; their bytes). 0 = all.

    >>> first_docs(["abc", "de", "f"], 4)
    (['abc'], 3)
    """
    out, n_bytes = [], 0
    for text in texts:
        size = len(text.encode("utf-8"))
        if max_bytes and out and n_bytes + size > max_bytes:
            break
        out.append(text)
        n_bytes += size
    return out, n_bytes


def in_heldout(digest, split_seed, heldout_ratio):
    """True if the document whose text has this sha256 hex digest goes to the held-out split: a function of
    (text, seed) only, so a split never depends on file order and a document never changes sides.

        >>> in_heldout(hashlib.sha256(b"x").hexdigest(), 0, 0.1)
        False
    """
    return (
        int(hashlib.sha256(f"{split_seed}:{digest}".encode()).hexdigest()[:16], 16) / 2**64
        < heldout_ratio
    )
