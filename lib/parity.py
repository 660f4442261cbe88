"""Parity across runtimes: does a tokenizer.json give the same ids in tokenizers.js as in Python?

tokenizers.js is the tokenizer runtime of transformers.js (browser, Node). It translates the Oniguruma
regexes of tokenizer.json into JavaScript ones, and a construct it cannot translate gives other ids
silently. The check encodes the same texts in both and compares id by id.

    >>> report = compare("artifacts/tokenizers/distilled_unigram", ["x = 1  # ====\\n"])
    >>> report["documents_differ"]
    0

The Node side is scripts/js/parity.mjs with the pinned package of scripts/js/package-lock.json,
installed by `make node` (npm ci --ignore-scripts).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

JS_DIR = Path(__file__).resolve().parents[1] / "scripts" / "js"
JS_SCRIPT = JS_DIR / "parity.mjs"
JS_PACKAGE = JS_DIR / "node_modules" / "@huggingface" / "tokenizers" / "package.json"


def js_runtime_missing() -> str | None:
    """Why tokenizers.js cannot run here (a one-line reason), or None when it can."""
    if shutil.which("node") is None:
        return "node is not on PATH (install Node >= 18 to check tokenizers.js parity)"
    if not JS_PACKAGE.exists():
        return f"{JS_PACKAGE.parent} is missing: run `make node`"
    return None


def js_version() -> str:
    """The pinned tokenizers.js version that is installed."""
    return json.loads(JS_PACKAGE.read_text(encoding="utf-8"))["version"]


def js_ids(tokenizer_dir: Path, texts: list[str], timeout: float = 600) -> list[list[int]]:
    """The ids tokenizers.js gives each text (no special tokens added). Raises RuntimeError with the
    Node side's message when it fails."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8", delete=False) as f:
        for text in texts:
            f.write(json.dumps(text) + "\n")
        path = f.name
    try:
        with open(path, encoding="utf-8") as stdin:
            done = subprocess.run(
                ["node", str(JS_SCRIPT), str(tokenizer_dir)],
                stdin=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={
                    **os.environ,
                    "NODE_OPTIONS": f"{os.environ.get('NODE_OPTIONS', '')} --max-old-space-size=4096",
                },
            )
    finally:
        os.unlink(path)
    if done.returncode != 0:
        raise RuntimeError(
            done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "node failed"
        )
    lines = done.stdout.splitlines()
    if len(lines) != len(texts):
        raise RuntimeError(f"tokenizers.js returned {len(lines)} results for {len(texts)} texts")
    return [json.loads(line) for line in lines]


def first_difference(a: list[int], b: list[int]) -> int:
    """The first index where two id lists differ: first_difference([1, 2, 3], [1, 5]) == 1."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def compare(tokenizer_dir: Path, texts: list[str]) -> dict:
    """Encode texts with Python `tokenizers` and with tokenizers.js from the same tokenizer.json; the
    counts and the first differing text (with both id lists around the first difference)."""
    from tokenizers import Tokenizer

    texts = [t for t in texts if t]  # tokenizers.js's line protocol has no empty text; both give []
    python = [
        e.ids
        for e in Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json")).encode_batch(
            texts, add_special_tokens=False
        )
    ]
    js = js_ids(Path(tokenizer_dir), texts)
    differ = [k for k, (p, j) in enumerate(zip(python, js)) if p != j]
    report = {
        "runtime": f"tokenizers.js {js_version()} (@huggingface/tokenizers, Node)",
        "documents": len(texts),
        "documents_differ": len(differ),
        "bytes": sum(len(t.encode("utf-8")) for t in texts),
        "first": None,
    }
    if differ:
        k = differ[0]
        at = first_difference(python[k], js[k])
        report["first"] = {
            "document": k,
            "text": texts[k][:200],
            "at_id": at,
            "python": python[k][max(0, at - 3) : at + 5],
            "tokenizers_js": js[k][max(0, at - 3) : at + 5],
        }
    return report


def tricky_texts(units: list[str] = ()) -> list[str]:
    """Text where runtimes part ways: runs of each run character (byte-level units, as the run split
    names them) alone, after a space and between other punctuation; newline runs; box drawing; the
    special token inside text; CJK; emoji; whitespace runs; contractions after punctuation."""
    from lib.tokenizer import piece_bytes

    chars = []
    for u in units:
        try:
            chars.append(piece_bytes(u).decode("utf-8"))
        except (KeyError, UnicodeDecodeError):
            pass
    out = []
    for c in chars:
        for n in (2, 3, 5, 8, 17, 33):
            out += [
                c * n,
                " " + c * n,
                "(" + c * n + ")",
                "x " + c * n + " y\n",
                "#" + c * n + "\n",
            ]
    out += ["\n" * n + " " * k + "x" for n in range(1, 8) for k in (0, 1, 3, 4, 8)]
    out += [
        "+" + "-" * 20 + "+\n|" + " " * 20 + "|\n",
        "┌" + "─" * 30 + "┐\n│ box │\n└" + "─" * 30 + "┘",
        "a<|endoftext|>b",
        "<|endoftext|><|endoftext|>x",
        " <|endoftext|>\n\n\n",
        "안녕하세요 세계! ㅋㅋㅋㅋㅋ",
        "你好，世界。東京都",
        "emoji 😀🎉👍🏽 👨‍👩‍👧",
        "\t\t  \u00a0\u00a0 \r\n\r\n",
        "it's 'twas ''s '' 're' #" + "'" * 3 + "re x'sss __'s " + "'" * 4 + "s b'SSND'",
        "=====\n#####\n*****/\n//////////",
        "1000000 70000001 0.000001 1e-10",
        "def f(x):\n    return x  # ====\n\n\n",
    ]
    return out


def budget(texts, max_bytes: int) -> list[str]:
    """The texts, in order, while they fit in max_bytes (a text past what is left is passed over):
    budget(["ab", "cde", "f"], 3) == ["ab", "f"]."""
    out, left = [], max_bytes
    for text in texts:
        n = len(text.encode("utf-8"))
        if 0 < n <= left:
            out.append(text)
            left -= n
    return out


def check(
    tokenizer_dir: Path, texts_by_kind: dict[str, list[str]], on_difference: str, config_file: str
) -> dict:
    """The parity report of tokenizer_dir on each kind of text. A difference stops the step with one
    line naming the first differing text (on_difference "error"), or is logged as a loud warning
    ("warn"). Without Node or the package, says so in one line and reports the check as not run."""
    from lib.log import die, log

    missing = js_runtime_missing()
    if missing:
        log.warning(f"warning: tokenizers.js parity NOT checked: {missing}")
        return {"checked": False, "why": missing}
    kinds, texts = [], []
    for kind, part in texts_by_kind.items():
        kinds += [kind] * len(part)
        texts += part
    log.info(
        f"tokenizers.js parity: {len(texts):,} texts, {sum(len(t.encode('utf-8')) for t in texts):,} bytes"
    )
    try:
        report = compare(tokenizer_dir, texts)
    except (
        RuntimeError,
        OSError,
        ValueError,
        subprocess.TimeoutExpired,
    ) as error:  # ValueError: bad JSON
        die(
            f"{tokenizer_dir}: the tokenizers.js parity check failed to run: {error}; run `make node`"
        )
    report["checked"] = True
    report["by_kind"] = {kind: sum(k == kind for k in kinds) for kind in texts_by_kind}
    if report["first"]:
        report["first"]["kind"] = kinds[report["first"]["document"]]
    line = describe(report)
    log.info(line)
    if report["documents_differ"]:
        where = f"{Path(tokenizer_dir) / 'tokenizer.json'} is not portable: {line}"
        if on_difference == "error":
            die(
                f"{where}; fix the tokenizer, or set js_parity: warn in {config_file} to write it anyway"
            )
        log.warning(
            "WARNING "
            + "!" * 40
            + f"\nWARNING: {where}\nWARNING: written anyway (js_parity: warn in "
            f"{config_file}): tokenizers.js / transformers.js users get other ids\nWARNING "
            + "!"
            * 40
        )
    return report


def describe(report: dict) -> str:
    """One line: 'tokenizers.js 0.2.0 ...: 0 of 1,204 documents differ'."""
    line = f"{report['runtime']}: {report['documents_differ']:,} of {report['documents']:,} documents differ"
    first = report.get("first")
    if first:
        line += (
            f"; the first, document {first['document']} ({first['text'][:60]!r}), at id {first['at_id']}: "
            f"Python {first['python']}, tokenizers.js {first['tokenizers_js']}"
        )
    return line
