"""The distillation tests' tiny corpus and quick profile, and small hand-made cases: what 01-03 would
leave for 04 and 11 (make_inputs, quick_configs), GPT-2's tables, and RepairIndex cases for the repairs."""

import collections
import hashlib
import itertools
import json
import shutil
import struct

import yaml

from conftest import ROOT
from lib.tokenizer import EOT, piece_bytes

FIXTURE_DOCS = [
    "def add(a, b):\n    return a + b\n\n\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n",
    "# ==========================================\n# Section\n# ------------------------------------------\n",
    "#####\n########\n'''docstring'''\nx = '''\n'''\n\n\n",
    "Some prose, with punctuation; and numbers 12345 and 1000000.\nThe allowance was paid...\n",
    "for i in range(10):\n\tif i % 2:\n\t\tcontinue\n\n\n\n    # ****************\n",
    "안녕하세요 세계! 你好，世界。 emoji: 😀🎉 ffffffff 0000000 ㅋㅋㅋㅋㅋ ————\n",
    " +---------------+-------------------+\n /****************************************/ ('''\n",
    "DLLLIBRARY\nSTDLIB\n",  # no Unigram scores give both BPE's cut (a certified conflict: test_certified_conflict_reported)
]

HELDOUT_DOCS = [
    "def sub(a, b):\n    return a - b  # ========\n\n\n",
    "Plain English text, held out.\n",
    "DLLLIBRARY\nSTDLIB\n",
]  # one of the two is wrong, held out too: certified against train (test_unseen_conflict_certified)

OOD_FILES = {  # out-of-domain sources of the quick profile: type -> {file name: text}
    "prose": {"a.txt": "It was the best of times, it was the worst of times...\n"},
    "c_code": {"x.h": "/* ------------------------------------ */\n#define MASK 0xffffffffUL\n"},
    "korean": {"k.txt": "안녕하세요, 세계! ㅋㅋㅋ\n", "dup.txt": "안녕하세요, 세계! ㅋㅋㅋ\n"},
}

QUICK = {
    "vocab_example_limit": 2000,
    "run_split_max_len": 96,
    "decode_samples": 3000,
    "throughput_bytes": 20000,
    "throughput_repeats": 1,
    "max_rounds": 3,
    "ood_max_bytes": 100000,
    "ood_emoji_docs": 2,
    "generated_examples": 2000,
    "number_examples_max_digits": 2,
}
QUICK_CERTIFY = {"certify_time_limit": 60}


def make_inputs(art, gpt2_bpe):
    """What 01, 02 and 03 would leave: the original tokenizer, the corpus split, the BPE id sequences and the
    pre-token table (each distinct pre-token of the train split with its count and GPT-2's ids)."""
    from lib.tokenizer import save_hf_tokenizer

    save_hf_tokenizer(gpt2_bpe, art / "tokenizers" / "original")
    cleaned = art / "corpora" / "cleaned"
    cleaned.mkdir(parents=True)
    for name, docs in (("train", FIXTURE_DOCS), ("heldout", HELDOUT_DOCS)):
        with open(cleaned / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for i, doc in enumerate(docs):
                f.write(json.dumps({"id": f"{name}{i}", "source": "fixture", "text": doc}) + "\n")
    files = [
        {"path": f"doc{i}.txt", "sha256": hashlib.sha256(d.encode()).hexdigest()}
        for i, d in enumerate(FIXTURE_DOCS + HELDOUT_DOCS)
    ]
    (cleaned / "manifest.json").write_text(json.dumps({"files": files}))
    reports = art / "analysis" / "reports"
    reports.mkdir(parents=True)
    lines = [" ".join(map(str, gpt2_bpe.encode(d).ids)) for d in FIXTURE_DOCS]
    (reports / "bpe_token_id_sequences.txt").write_text("\n".join(lines) + "\n", encoding="ascii")
    write_table(
        reports / "pretoken_table.parquet",
        gpt2_bpe,
        FIXTURE_DOCS,
        art / "tokenizers" / "original" / "tokenizer.json",
    )


def write_table(path, gpt2_bpe, docs, tokenizer_json):
    """The pre-token table of docs, as 03 writes it (lib/pretokens.py)."""
    from tokenizers import pre_tokenizers

    from lib.files import sha256_file
    from lib.pretokens import write_pretoken_table

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    counts, doc_counts = collections.Counter(), collections.Counter()
    for d in docs:
        words = [w for w, _ in byte_level.pre_tokenize_str(d)]
        counts.update(words)
        doc_counts.update(set(words))
    rows = sorted(counts, key=lambda w: (-counts[w], w))
    bare = gpt2_bpe.__class__.from_str(gpt2_bpe.to_str())
    bare.pre_tokenizer = None
    ids = [e.ids for e in bare.encode_batch(rows, add_special_tokens=False)]
    offsets = list(itertools.accumulate([0] + [len(x) for x in ids]))
    meta = {
        "tokenizer_sha256": sha256_file(tokenizer_json),
        "documents": len(docs),
        "occurrences": sum(counts.values()),
        "tokens": offsets[-1],
        "endoftext": 0,
    }
    write_pretoken_table(
        path,
        rows,
        [counts[w] for w in rows],
        [doc_counts[w] for w in rows],
        [i for x in ids for i in x],
        offsets,
        meta,
    )


def write_mo(path, pairs):
    """A little-endian gettext catalog (header entry first, as msgfmt writes it)."""
    pairs = [(b"", b"Content-Type: text/plain; charset=UTF-8\n")] + [
        (a.encode(), b.encode()) for a, b in pairs
    ]
    n, blob, table_o, table_t = len(pairs), b"", [], []
    start = 28 + 16 * n
    for a, _ in pairs:
        table_o.append((len(a), start + len(blob)))
        blob += a + b"\0"
    for _, b in pairs:
        table_t.append((len(b), start + len(blob)))
        blob += b + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    path.write_bytes(head + b"".join(struct.pack("<2I", *x) for x in table_o + table_t) + blob)


def quick_configs(root):
    """configs/ plus a 'quick' profile whose out-of-domain sources are small files under root."""
    configs = root / "configs"
    shutil.copytree(ROOT / "configs", configs)
    (configs / "quick").mkdir()
    sources = {}
    for kind, files in OOD_FILES.items():
        (root / "ood" / kind).mkdir(parents=True)
        for name, text in files.items():
            (root / "ood" / kind / name).write_text(text, encoding="utf-8")
        sources[kind] = [str(root / "ood" / kind / "*")]
    write_mo(root / "ood" / "korean" / "ko.mo", [("Hello", "안녕하세요 ———"), ("File", "파일")])
    sources["emoji"] = ["generated:emoji"]
    sources["absent"] = [str(root / "nowhere" / "*.txt")]
    (configs / "quick" / "distill.yaml").write_text(
        yaml.safe_dump({**QUICK, "ood_sources": sources}, sort_keys=False), encoding="utf-8"
    )
    (configs / "quick" / "certify.yaml").write_text(yaml.safe_dump(QUICK_CERTIFY), encoding="utf-8")
    return configs


def read_report(art):
    return json.loads(
        (art / "analysis" / "reports" / "distill_validation.json").read_text(encoding="utf-8")
    )


def id_bytes_of(gpt2_bpe):
    return [
        piece_bytes(s) if s != EOT else EOT.encode()
        for s, _ in sorted(gpt2_bpe.get_vocab().items(), key=lambda x: x[1])
    ]


def gpt2_tables(gpt2_bpe):
    """(lib.gpt2_bpe.Gpt2Bpe, GPT-2's vocab, merges, the closed-form scores, token strings by id with EOT)."""
    from lib.gpt2_bpe import Gpt2Bpe, merge_tree_scores

    model = json.loads(gpt2_bpe.to_str())["model"]
    vocab = {s: i for s, i in model["vocab"].items() if s != EOT}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    scores = merge_tree_scores(vocab, merges, 4.0, 10.0)
    return (
        Gpt2Bpe(gpt2_bpe, vocab, merges),
        vocab,
        merges,
        scores,
        [s for s, _ in sorted(vocab.items(), key=lambda x: x[1])] + [EOT],
    )


def group_case():
    """(strings, merges, scores, examples) where 'abc' (label a+bc) is cut ab+c and each single move that
    fixes it breaks another example; lowering 'ab' with 'abd', built on it, breaks none."""
    strings = ["a", "b", "c", "d", "e", "f", "ab", "bc", "abd", "dd", "ae", "ce", "cf"]
    merges = [("a", "b"), ("b", "c"), ("ab", "d"), ("d", "d"), ("a", "e"), ("c", "e"), ("c", "f")]
    scores = [0.0] * 6 + [10.0, 9.0, 14.5, 5.0, 0.5, 9.5, -0.5]
    examples = {
        "abc": ["a", "bc"],
        "abdd": ["ab", "dd"],
        "ae": ["ae"],
        "bce": ["b", "ce"],
        "cf": ["c", "f"],
    }
    return strings, merges, scores, examples


def exact_case(strings, examples, scores):
    """(vocab, RepairIndex refreshed under scores, the examples as [(piece, label ids, 1)]) of a hand-made case."""
    from lib.unigram import RepairIndex, lattice

    vocab = {s: i for i, s in enumerate(strings)}
    words, labels = list(examples), [tuple(vocab[s] for s in y) for y in examples.values()]
    index = RepairIndex(
        [lattice(w, vocab, max(map(len, strings))) for w in words],
        labels,
        [1] * len(words),
        [len(w) for w in words],
        [len(s) for s in strings],
    )
    index.refresh_all(scores)
    return vocab, index, [(w, y, 1) for w, y in zip(words, labels)]


def example(k, ex, index):
    """Example k as least_fix takes it: (piece, lattice, label)."""
    return ex[k][0], index.lats[k], index.labels[k]


EXACT_CFG = {"margin_rel": 1e-12, "exact_repair_max_strings": 1000, "exact_repair_max_tokens": 64}
