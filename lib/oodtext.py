"""Out-of-domain text: files of other kinds than the corpus, read the same way on every machine, for checks
that a tokenizer holds on text it never saw (04's agreement; see configs/distill.yaml: ood_sources).

    >>> docs = ood_documents({"c_headers": ["/usr/include/*.h"]}, max_bytes=1_000_000, emoji_n_docs=0, seed=0)
    >>> docs["c_headers"]["files"][0]      # [path, bytes] of the first file, in sorted order

Each file is one document; a gettext .mo catalog counts as its translated strings; 'generated:emoji' is a
deterministic emoji text generated from unicodedata. Placeholders: '{stdlib}' is this Python's standard
library, '{purelib}' its site-packages (for the venv's interpreter: Python code outside the stdlib).
"""

import collections
import glob
import gzip
import hashlib
import json
import random
import struct
import sysconfig
import unicodedata
from pathlib import Path

from lib.log import die

EMOJI_RANGES = [
    (0x1F300, 0x1F5FF),
    (0x1F600, 0x1F64F),
    (0x1F680, 0x1F6FF),
    (0x1F900, 0x1F9FF),
    (0x2600, 0x27BF),
]


def read_mo(path):
    """The translated strings of a gettext .mo catalog, one per line; None unless it is a UTF-8 catalog."""
    data = Path(path).read_bytes()
    if len(data) < 20 or data[:4] not in (b"\xde\x12\x04\x95", b"\x95\x04\x12\xde"):
        return None
    end = "<" if data[:4] == b"\xde\x12\x04\x95" else ">"
    _, n, orig, trans = struct.unpack(end + "4I", data[4:20])
    out = []
    try:
        for k in range(n):
            (n_orig,) = struct.unpack(end + "I", data[orig + 8 * k : orig + 8 * k + 4])
            length, offset = struct.unpack(end + "2I", data[trans + 8 * k : trans + 8 * k + 8])
            if n_orig:  # the entry with an empty msgid is the catalog header
                out.extend(data[offset : offset + length].decode("utf-8").split("\x00"))
    except (struct.error, UnicodeDecodeError):
        return None
    return "\n".join(out) + "\n" if out else None


def emoji_docs(n_docs, lines_per_doc, seed):
    """Deterministic emoji text: Unicode names as words, emoji alone, with VS16, skin tones, ZWJ, flags, runs."""
    rng = random.Random(seed)
    emoji = [
        chr(c) for lo, hi in EMOJI_RANGES for c in range(lo, hi + 1) if unicodedata.name(chr(c), "")
    ]
    tones = [chr(c) for c in range(0x1F3FB, 0x1F400)]
    flag = lambda: chr(0x1F1E6 + rng.randrange(26)) + chr(0x1F1E6 + rng.randrange(26))
    docs = []
    for _ in range(n_docs):
        lines = []
        for _ in range(lines_per_doc):
            parts = []
            for _ in range(rng.randint(2, 8)):
                c, r = rng.choice(emoji), rng.random()
                parts.append(
                    unicodedata.name(c).lower()
                    if r < 0.35
                    else c
                    if r < 0.55
                    else c + "\ufe0f"
                    if r < 0.65
                    else c + rng.choice(tones)
                    if r < 0.72
                    else c + "\u200d" + rng.choice(emoji)
                    if r < 0.8
                    else flag()
                    if r < 0.86
                    else c * rng.randint(2, 5)
                    if r < 0.93
                    else rng.choice(
                        ["!!", ":)", "#" + unicodedata.name(c).split()[0].lower(), "...", "?!"]
                    )
                    + c
                )
            lines.append(" ".join(parts))
        docs.append("\n".join(lines) + "\n")
    return docs


def expand(pattern):
    """A glob with {stdlib} and {purelib} filled in."""
    paths = sysconfig.get_paths()
    return pattern.replace("{stdlib}", paths["stdlib"]).replace("{purelib}", paths["purelib"])


def spread(paths, max_bytes):
    """The paths at an even stride over the sorted list when all of them hold more than max_bytes, so that a
    sample of a large tree (site-packages) spans all of it rather than its first few packages."""
    sizes = [Path(p).stat().st_size for p in paths]
    stride = max(1, sum(sizes) // max(max_bytes, 1))
    return paths[::stride] + [p for k, p in enumerate(paths) if k % stride]


def corpus_file_hashes(manifest_path):
    """The sha256 of every source file of the corpus (02's manifest.json): text that is in the corpus is
    never measured as text the steps did not see."""
    manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    return frozenset(f["sha256"] for f in manifest.get("files", []) if "sha256" in f)


def read_document(path, in_corpus=frozenset()):
    """(text of one file as a document, why not): a .mo catalog gives its translations, a .gz file its text; None with the reason
    when it is not UTF-8 text or its bytes are a file of the corpus (sha256 in in_corpus)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None, "unreadable"
    if hashlib.sha256(data).hexdigest() in in_corpus:
        return None, "in the corpus"
    if path.endswith(".gz"):  # man and info pages
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            return None, "not gzip"
    if path.endswith(".mo"):
        text = read_mo(path)
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    return (text, None) if text else (None, "not UTF-8")


def type_paths(pattern, max_bytes, even, emoji_n_docs, seed):
    """[(path, text or None)] of one pattern: generated documents come with their text, files are read later."""
    if pattern == "generated:emoji":
        return [
            (f"generated:emoji/{k}", t) for k, t in enumerate(emoji_docs(emoji_n_docs, 50, seed))
        ]
    paths = sorted(p for p in glob.glob(expand(pattern), recursive=True) if Path(p).is_file())
    return [(p, None) for p in (spread(paths, max_bytes) if even else paths)]


def ood_documents(sources, max_bytes, emoji_n_docs=0, seed=0, even=False, in_corpus=frozenset()):
    """{type: {"files": [[path, bytes]], "docs": [text], "note": why it is short or absent}}. Each file is one
    document (a .mo catalog: its translations); a pattern's files are read in sorted order (even: at an even
    stride when they hold more than max_bytes) until max_bytes per type; files that are not UTF-8, are
    duplicates, or are files of the corpus (in_corpus: corpus_file_hashes) are left out, and counted."""
    out = {}
    for kind, patterns in sources.items():
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            die(
                f"configs/distill.yaml: ood_sources.{kind} must be a list of file globs, got {patterns!r}"
            )
        files, docs, seen, size, left_out = [], [], set(), 0, collections.Counter()
        for pattern in patterns:
            for path, text in type_paths(pattern, max_bytes, even, emoji_n_docs, seed):
                if size >= max_bytes:
                    break
                why = None
                if text is None:
                    text, why = read_document(path, in_corpus)
                if why:
                    left_out[why] += 1
                if why or text in seen:  # a duplicate is left out silently
                    continue
                seen.add(text)
                n = len(text.encode("utf-8"))
                files.append([path, n])
                docs.append(text)
                size += n
        note = "; ".join(f"{n} file(s) {why} left out" for why, n in sorted(left_out.items()) if n)
        note = note if docs else "no readable file here: skipped" + (f" ({note})" if note else "")
        out[kind] = {"patterns": patterns, "files": files, "docs": docs, "note": note}
    return out
