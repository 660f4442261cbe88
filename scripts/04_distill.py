"""
04 distill: a Unigram tokenizer that reproduces GPT-2's byte-level BPE, learned from BPE's own output.

    .venv/bin/python scripts/04_distill.py [--max-rounds 10] [--no-run-split] [--train-doc-sample 2000]
    make artifacts/tokenizers/distilled_unigram/tokenizer.json        (alias: make distill)

Reads artifacts/analysis/reports/pretoken_table.parquet (the labels: every distinct train pre-token with
its count and GPT-2's ids; lib/pretokens.py), bpe_token_id_sequences.txt (streamed, for an evenly spaced
sample of whole train documents), artifacts/tokenizers/original/ (GPT-2's vocab and merges) and the
held-out split (streamed). Writes artifacts/tokenizers/distilled_unigram/ (tokenizer.json + HF files: same
50,257 ids and strings, same byte-level pipeline, a Unigram model, no merges) and artifacts/analysis/
reports/distill_validation.{md,json} (agreement on train, held-out and out-of-domain text, mismatch
classes, decode identity, throughput). Memory and learning time follow the distinct pre-tokens.

How:
  1. Scores start from merge trees: score(token) = sum over the merges in its tree of
     ((5e4 + rank_offset) / (rank + 1 + rank_offset)) ** power; the 256 byte tokens score 0. The offset
     bounds the scores (1e15 rather than 6e18 for the first merge), so that float64 keeps the small
     differences when a token follows a big one: Viterbi sums scores left to right.
  2. Labelled examples: every distinct train pre-token with GPT-2's segmentation of it (the table),
     plus every vocab string (BPE encodes each to itself), plus generated strings labelled by BPE
     (identifiers of word parts, suffixed words, acronyms, upper-case words, numbers, token pairs, other
     scripts: built from the vocab alone, seeded; and every number of up to number_examples_max_digits
     digits), repaired like the train pieces (generated_use: guard only counts the ones a change
     breaks against it).
  3. Greedy repair: for each example whose Viterbi output differs from BPE's, try raising one token of
     BPE's segmentation or lowering one token of the Viterbi output just enough; keep the change that
     fixes the most example occurrences net, checked on every example whose output the change can alter
     (lib/unigram.py: RepairIndex proves the others keep theirs, so the result is that of checking all),
     less the guard strings it breaks: each moved token joined with a frequent train token on either
     side, labelled by BPE (PairGuards), so that a fix does not break the same token in unseen words.
  3b. Certification: each train piece still wrong (permutations aside) and the examples sharing its
     tokens go into a linear program over all scores (lib/certify.py: HiGHS, cutting planes from
     Viterbi); an infeasible one is cut to a minimal set whose Farkas multipliers are checked exactly:
     no Unigram scores reproduce BPE on those strings together (the report's certified class). Where
     that search finds none, the rows of the exact repair's infeasible LP (its dual ray) are checked the
     same way: a conflict, or a forced tie (the labels hold only with two segmentations scoring exactly
     the same, so rounding decides). The held-out and out-of-domain pieces still wrong get the exact
     repair's LP too, with nothing applied, and are then checked against the examples the same way.
  4. Ties no score can break (a run like '#####': BPE '####,#', Unigram's Viterbi '#,####') are cut the
     way BPE cuts them by a Split stage after ByteLevel (lib/runsplit.py): runs of one character in a
     pre-token, where tracing BPE on the run proves that no merge can cross the run's edges for that
     neighbour and run length; and '\\n\\n' pairs in whitespace. Checked against BPE on every run. Its
     regex is portable: tokenizers.js (transformers.js) cuts the same, which the validation checks.
  5. Validation also runs on text of other kinds (configs/distill.yaml: ood_sources): English prose,
     markdown, C, JavaScript, Korean, Chinese, Japanese, emoji; and a sample of it in tokenizers.js
     (lib/parity.py): a text whose ids differ there stops the step (js_parity: warn only warns).
"""

import collections
import itertools
import json
import re
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.certify import certify, least_change, prove
from lib.certify import row as label_row
from lib.config import parse_step_args, save_config, step_config
from lib.distill_report import report_md
from lib.files import atomic_path, iter_docs, require, write_json, write_text
from lib.log import die, log, setup_logging
from lib.oodtext import corpus_file_hashes, ood_documents
from lib.parity import budget, tricky_texts
from lib.parity import check as check_parity
from lib.paths import Artifacts
from lib.pretokens import read_pretoken_table
from lib.runsplit import build_run_split
from lib.schema import GENERATED_KINDS
from lib.tokenizer import (
    EOT,
    EOT_ID,
    VOCAB_SIZE,
    byte_level_pipeline,
    load_gpt2_tokenizer,
    piece_bytes,
    save_hf_tokenizer,
)
from lib.tokenizer_compare import decode_identity, throughput
from lib.unigram import RepairIndex, as_tokenizers_reads, is_right, lattice, path_score, viterbi

STEP = "04_distill"
N_MERGES = 50000


# -----------------------------------------------------------------------------
# GPT-2's vocabulary and merges, from the original tokenizer


def read_original(tokenizer_dir):
    """(BPE tokenizer, vocab {string: id} without EOT, merges [(a, b)] in rank order); dies unless it is GPT-2's."""
    tokenizer = load_gpt2_tokenizer(tokenizer_dir, expect_model="BPE")
    path = Path(tokenizer_dir) / "tokenizer.json"
    model = json.loads(path.read_text(encoding="utf-8"))["model"]
    vocab = {s: i for s, i in model.get("vocab", {}).items() if s != EOT}
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])
    ]
    bytes_ = [s for s in vocab if len(s) == 1]
    if len(vocab) != VOCAB_SIZE - 1 or len(merges) != N_MERGES or len(bytes_) != 256:
        die(
            f"{path}: {len(vocab):,} tokens, {len(merges):,} merges, {len(bytes_)} byte tokens; "
            f"GPT-2 has {VOCAB_SIZE - 1:,}, {N_MERGES:,}, 256: point to GPT-2's tokenizer"
        )
    for rank, m in enumerate(merges):
        if len(m) != 2 or m[0] not in vocab or m[1] not in vocab or m[0] + m[1] not in vocab:
            die(f"{path}: merge {rank:,} {m!r} does not build a vocab token; the file is corrupted")
    return tokenizer, vocab, merges


def merge_tree_scores(vocab, merges, power, rank_offset=0.0):
    """score(token) = sum over the merges of its tree of ((5e4 + offset) / (rank + 1 + offset)) ** power;
    bytes score 0. The last merge weighs 1 whatever the offset; the offset caps the first ones.

        >>> merge_tree_scores(vocab, merges, 4.0, 10.0)[vocab["Ġt"]]    # merge 0: (50010 / 11) ** 4
        427225018796530.9
    """
    scores = [0.0] * VOCAB_SIZE
    for rank, (a, b) in enumerate(merges):
        weight = ((5e4 + rank_offset) / (rank + 1 + rank_offset)) ** power
        scores[vocab[a + b]] = scores[vocab[a]] + scores[vocab[b]] + weight
    return scores


# -----------------------------------------------------------------------------
# tokenizers: the distilled one, and bare ones that segment byte-level pre-tokens


def build_unigram(vocab, scores, split):
    """The distilled tokenizer: GPT-2's ByteLevel, then the run split inside each pre-token (one Split
    stage, lib/runsplit.py), then Unigram. The learning sees exactly these pieces."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    pieces = [None] * VOCAB_SIZE
    for s, i in vocab.items():
        pieces[i] = (s, float(scores[i]))
    pieces[EOT_ID] = (EOT, 0.0)
    tokenizer = byte_level_pipeline(
        Tokenizer(models.Unigram(pieces, unk_id=None, byte_fallback=False))
    )
    if split:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([tokenizer.pre_tokenizer, split.stage()])
    return tokenizer


def bare(tokenizer, split=None):
    """The model alone (plus the run split): encodes byte-level pre-tokens as they are."""
    from tokenizers import Tokenizer

    t = Tokenizer.from_str(tokenizer.to_str())
    t.normalizer = None
    t.post_processor = None
    t.pre_tokenizer = split.stage() if split else None
    return t


def pre_tokenizer_gpt2():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


# -----------------------------------------------------------------------------
# labelled examples: the pre-token table (03) and a deterministic sample of whole train documents


def read_table(art):
    """The pre-token table, checked to be complete and made by this run's original tokenizer."""
    log.info(f"reading {art.pretoken_table}")
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


def split_examples(words, ids, counts, splitter, token_strings, progress=True):
    """Cut each labelled pre-token with the run split: ({(piece, ids): count}, cut-inside-a-token count).
    A pre-token whose ids do not spell it is a table that is not GPT-2's output: counted as a conflict."""
    examples = collections.Counter()
    bad = 0
    for w, y, n in tqdm(
        zip(words, ids, counts),
        total=len(words),
        desc="run split of pre-tokens",
        unit="pt",
        mininterval=1,
        leave=False,
        disable=not progress,
    ):
        pieces = [p for p, _ in splitter.pre_tokenize_str(w)] if splitter else [w]
        j, ok, out = 0, True, []
        for p in pieces:
            start, got = j, ""
            while len(got) < len(p) and j < len(y):
                got += token_strings[y[j]]
                j += 1
            if got != p:
                ok = False
                break
            out.append((p, y[start:j]))
        if not ok or j != len(y):
            bad += n
            continue
        for p, pids in out:
            examples[(p, tuple(pids))] += n
    return examples, bad


def labelled_examples(table, vocab, splitter, token_strings, cfg, generated):
    """The learning's examples [(piece, BPE ids, weight)]: the train pieces (pre-tokens cut by the run split),
    plus vocab strings (BPE encodes each to itself) and the generated pre-tokens (generated_labels); pieces
    over learn_max_piece_chars are left out (a lattice costs its length times the longest token). Returns
    (examples, their statistics)."""
    counts = table.counts.tolist()
    pieces, conflicts = split_examples(
        table.pretokens, table.all_ids(), counts, splitter, token_strings
    )
    vocab_items = sorted(vocab.items(), key=lambda kv: kv[1])
    if cfg["vocab_example_limit"] and cfg["vocab_example_limit"] < len(vocab_items):
        step = len(vocab_items) / cfg["vocab_example_limit"]
        vocab_items = [vocab_items[int(k * step)] for k in range(cfg["vocab_example_limit"])]
    vocab_pieces, vocab_conflicts = split_examples(
        [s for s, _ in vocab_items],
        [(i,) for _, i in vocab_items],
        [1] * len(vocab_items),
        splitter,
        token_strings,
    )
    gen_pieces, gen_conflicts = split_examples(
        generated[0], generated[1], [1] * len(generated[0]), splitter, token_strings
    )
    if conflicts + vocab_conflicts + gen_conflicts:
        log.warning(
            f"the run split cut inside a BPE token {conflicts + vocab_conflicts + gen_conflicts:,} times"
        )
    examples = collections.Counter(pieces)
    for key, n in vocab_pieces.items():
        examples[key] += n * cfg["vocab_weight"]
    for key in gen_pieces:
        examples[key] += cfg["generated_weight"]
    long = {key for key in examples if len(key[0]) > cfg["learn_max_piece_chars"]}
    examples = [(p, y, n) for (p, y), n in sorted(examples.items()) if (p, y) not in long]
    in_train = [(p, y) in pieces for p, y, _ in examples]
    targets = (
        [(p, y) in pieces or (p, y) in vocab_pieces for p, y, _ in examples]
        if cfg["generated_use"] == "guard"
        else None
    )
    stats = {
        "pieces": len(pieces),
        "piece_occurrences": sum(pieces.values()),
        "vocab_strings": len(vocab_pieces),
        "generated_pieces": len(gen_pieces),
        "generated_new": sum(key not in pieces for key in gen_pieces),
        "left_out_long": len(long),
        "split_conflicts": conflicts + vocab_conflicts + gen_conflicts,
    }
    log.info(
        f"{table.meta.get('documents', 0):,} train documents -> {int(table.counts.sum()):,} pre-tokens "
        f"({len(table):,} distinct) -> {len(pieces):,} distinct pieces, + {len(vocab_pieces):,} vocab strings, "
        f"+ {len(gen_pieces):,} generated pieces ({stats['generated_new']:,} not in train)"
        + (
            f"; {len(long):,} pieces over {cfg['learn_max_piece_chars']:,} characters left out"
            if long
            else ""
        )
    )
    return examples, in_train, targets, stats


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


# -----------------------------------------------------------------------------
# generated examples: BPE labels any string, so the learning need not stop at the corpus's words
#
# What the corpus-only scores get wrong on unseen text is ordinary: identifiers made of word parts
# (` typeDefault`, `toknum`), acronyms (`TLSEXT`, ` IEEEFloat`), numbers (` 4954`), other scripts, symbol
# pairs. Strings of those shapes are generated from the vocabulary alone (no text is read, so nothing the
# report calls out of domain is learned on), cut by GPT-2's pre-tokenizer, and labelled by GPT-2's BPE.


def word_parts(vocab):
    """({length: ASCII letter parts (lower case)}, non-ASCII letter parts, decodable token texts) of the
    vocabulary, leading spaces stripped: the pieces generated strings are made of.

        >>> parts, other, texts = word_parts(vocab); parts[3][:2]
        ['aaa', 'aab']
    """
    latin, other, texts = collections.defaultdict(set), set(), []
    for s in sorted(vocab):
        try:
            text = piece_bytes(s).decode("utf-8")
        except UnicodeDecodeError:
            continue
        texts.append(text)
        w = text[1:] if text.startswith(" ") else text
        if w.isascii() and w.isalpha() and len(w) <= 10:
            latin[len(w)].add(w.lower())
        elif w.isalpha() and not w.isascii():
            other.add(w)
    return {n: sorted(v) for n, v in sorted(latin.items())}, sorted(other), texts


# English suffixes: a word part plus these makes the unseen inflections ('walking', 'players', 'creation')
SUFFIXES = [
    "s",
    "es",
    "ed",
    "ing",
    "er",
    "ers",
    "ly",
    "ion",
    "ions",
    "ation",
    "ations",
    "ment",
    "ness",
    "able",
    "al",
    "ity",
    "ive",
    "ize",
    "ized",
    "ist",
    "ism",
    "ful",
    "less",
    "ous",
]


def generated_texts(vocab, n, seed, kinds=GENERATED_KINDS):
    """n strings, n / len(kinds) of each kind (GENERATED_KINDS), the same for the same arguments. Word parts
    are drawn by length first (uniform 1..10), so short parts ('tok', 'num') are as common as long ones.

        lower ' toknum'  suffixed ' walking'  camel 'typeDefault'  capital ' DataLoader'  upper 'TLSEXT'
        upper_words ' RECOVERY'  digits ' 4954'  digit_runs '70000001'  vocab_pair two tokens joined ('┌' + '───')
        script 'данных' / ' 注释'
    """
    import random

    rng = random.Random(seed)
    parts, other, texts = word_parts(vocab)
    lengths = list(parts)
    part = lambda most=10: rng.choice(parts[rng.choice([k for k in lengths if k <= most])])
    space = lambda: " " if rng.random() < 0.5 else ""
    out = []
    for _ in range(-(-n // len(kinds))):
        # every kind draws each round, so a kind left out changes none of the others' strings
        words = [part() for _ in range(rng.randint(2, 3))]
        caps = [part(4).upper() for _ in range(rng.randint(1, 3))]
        # numbers in code are padded, masked and rounded ('0x00010000', '70000001', '999950'): runs of one
        # digit, each 1 long half the time and up to 8 long otherwise
        runs = [
            rng.choice("0123456789") * (1 if rng.random() < 0.5 else rng.randint(2, 8))
            for _ in range(rng.randint(2, 4))
        ]
        made = {
            "lower": space() + "".join(words),
            "suffixed": space() + words[0] + "".join(rng.sample(SUFFIXES, rng.randint(1, 2))),
            "camel": space() + words[0] + "".join(w.capitalize() for w in words[1:]),
            "capital": space() + "".join(w.capitalize() for w in words),
            "upper": space() + "".join(caps) + (part().capitalize() if rng.random() < 0.5 else ""),
            "upper_words": space() + "".join(w.upper() for w in words[: rng.randint(1, 3)]),
            "digits": space()
            + "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 12))),
            "digit_runs": space() + "".join(runs)[:16],
            "vocab_pair": rng.choice(texts) + rng.choice(texts),
            "script": space() + "".join(rng.choice(other) for _ in range(rng.randint(1, 3)))
            if other
            else "",
        }
        out.extend(made[k] for k in kinds)
    return out[:n]


def number_texts(max_len):
    """Every ASCII number of 1..max_len digits, bare and after a space: numbers in text are mostly short
    (years, sizes, ports), and no random draw covers the 22,220 of up to 4 digits.

        >>> number_texts(1)[:3], len(number_texts(2))
        (['0', ' 0', '1'], 220)
    """
    import itertools

    return [
        space + "".join(d)
        for n in range(1, max_len + 1)
        for d in itertools.product("0123456789", repeat=n)
        for space in ("", " ")
    ]


def generated_labels(texts, original):
    """(distinct byte-level pre-tokens of the generated texts, cut by GPT-2's pre-tokenizer, GPT-2's ids of each)."""
    gpt2_pt = pre_tokenizer_gpt2()
    words = sorted(
        {
            w
            for t in tqdm(texts, desc="generated examples", unit="text", mininterval=1, leave=False)
            for w, _ in gpt2_pt.pre_tokenize_str(t)
        }
    )
    ids = [tuple(e.ids) for e in bare(original).encode_batch(words)]
    return words, ids


# -----------------------------------------------------------------------------
# pair guards: what a repair would break beyond the examples
#
# A repair moves a token's score in every string that holds it, and unseen text holds it where no example
# does: lowering 'Ġcm' by 243 to fix one train piece turned ' cmode' and ' cmake' wrong, which the closed
# form had right. So each token a repair would move is also tried on the strings it makes with the most
# frequent train tokens on either side (one GPT-2 pre-token each, cut by the run split, labelled by BPE,
# built the first time the token is tried); each one the change turns wrong counts against it.


def frequent_tokens(examples, in_train, n):
    """The n tokens used most often in the train pieces' BPE labels (ties by id).

    >>> frequent_tokens([("Ġa", (64,), 3), ("bb", (65, 65), 1)], [True, True], 1)
    [64]
    """
    counts = collections.Counter()
    for (_, y, w), train in zip(examples, in_train):
        if train:
            for i in y:
                counts[i] += w
    return sorted(counts, key=lambda i: (-counts[i], i))[:n]


def pair_guards(original, vocab, token_strings, splitter, examples, in_train, cfg):
    """PairGuards over the guard_partners most frequent train tokens, or None when guard_partners is 0."""
    if not cfg["guard_partners"]:
        return None
    partners = frequent_tokens(examples, in_train, cfg["guard_partners"])
    keys = {(p, y) for p, y, _ in examples}
    return PairGuards(original, vocab, token_strings, partners, splitter, keys, cfg["guard_weight"])


class PairGuards:
    """Guard strings per token: token + partner and partner + token, for each partner (frequent_tokens),
    kept when GPT-2's pre-tokenizer leaves them whole and they are no example already (those count anyway).

        >>> guards = PairGuards(original, vocab, token_strings, partners, splitter, example_keys, weight=1)
        >>> guards.loss([vocab["Ġcm"]], -1e9, scores)      # ' cmode', ' cmake', ... turned wrong, times weight
    """

    def __init__(self, original, vocab, token_strings, partners, splitter, example_keys, weight):
        self.original, self.vocab, self.token_strings = bare(original), vocab, token_strings
        self.splitter, self.example_keys, self.weight = splitter, example_keys, weight
        self.max_len = max(map(len, vocab))
        self.partners = [t for t in map(self.text, partners) if t]
        self.pre_tokenizer = pre_tokenizer_gpt2()
        self.cache, self.tried, self.outweighed = {}, 0, 0
        self.pairs = {}  # (a, b) -> the guard strings of a + b (joined)

    def text(self, i):
        try:
            return piece_bytes(self.token_strings[i]).decode("utf-8")
        except (
            KeyError,
            UnicodeDecodeError,
        ):  # a token that cuts a character pairs with nothing whole
            return None

    def strings(self, i):
        """[(lattice, BPE label, piece)] of token i's guard strings (built once)."""
        if i not in self.cache:
            a, words = self.text(i), set()
            for b in self.partners if a else []:
                for joined in (a + b, b + a):
                    cut = self.pre_tokenizer.pre_tokenize_str(joined)
                    if len(cut) == 1:
                        words.add(cut[0][0])
            words = sorted(words)
            ids = [tuple(e.ids) for e in self.original.encode_batch(words)] if words else []
            pieces, _ = split_examples(
                words, ids, [1] * len(words), self.splitter, self.token_strings, progress=False
            )
            self.cache[i] = [
                (lattice(p, self.vocab, self.max_len), y, p)
                for p, y in sorted(pieces)
                if (p, y) not in self.example_keys
            ]
        return self.cache[i]

    def joined(self, tokens):
        """[(lattice, BPE label, piece)] of the strings a + b, for a and b in tokens (one change's moved
        tokens), that GPT-2's pre-tokenizer leaves whole and that are no example: where a wide change meets
        itself ('200' + '430' when both move). Built once per pair."""
        words = {}
        for a, b in itertools.product(tokens, repeat=2):
            if (a, b) not in self.pairs:
                self.pairs[(a, b)] = []
                ta, tb = self.text(a), self.text(b)
                cut = self.pre_tokenizer.pre_tokenize_str(ta + tb) if ta and tb else []
                if len(cut) == 1:
                    words[(a, b)] = cut[0][0]
        if words:
            labels = [tuple(e.ids) for e in self.original.encode_batch(list(words.values()))]
            for (key, w), y in zip(words.items(), labels):
                pieces, _ = split_examples(
                    [w], [y], [1], self.splitter, self.token_strings, progress=False
                )
                self.pairs[key] = [
                    (lattice(p, self.vocab, self.max_len), q, p)
                    for p, q in sorted(pieces)
                    if (p, q) not in self.example_keys
                ]
        return [g for key in itertools.product(tokens, repeat=2) for g in self.pairs[key]]

    def loss(self, group, delta, scores):
        """weight x the guard strings of group's tokens that moving them by delta turns from right to wrong."""
        strings = [g for i in group for g in self.strings(i)]
        before = [is_right(viterbi(lat, scores), y) for lat, y, _ in strings]
        old = [scores[i] for i in group]
        for i in group:
            scores[i] += delta
        broken = sum(
            b and not is_right(viterbi(lat, scores), y) for (lat, y, _), b in zip(strings, before)
        )
        for i, x in zip(group, old):
            scores[i] = x
        self.tried += 1
        return self.weight * broken

    def summary(self):
        return {
            "partners": len(self.partners),
            "tokens": len(self.cache),
            "strings": sum(map(len, self.cache.values())),
            "changes_tried": self.tried,
            "changes_outweighed": self.outweighed,
        }


# -----------------------------------------------------------------------------
# learning: greedy repair of the closed-form scores (Viterbi and the skip index: lib/unigram.py)


def merged_from(vocab, merges):
    """{token id: the tokens merged directly from it}."""
    up = collections.defaultdict(list)
    for a, b in merges:
        up[vocab[a]].append(vocab[a + b])
        up[vocab[b]].append(vocab[a + b])
    return up


def built_on(i, up, max_group):
    """Token i and every token built on it (sorted), or None when that is more than max_group tokens."""
    seen, todo = {i}, [i]
    while todo and len(seen) <= max_group:
        for j in up[todo.pop()]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return sorted(seen) if len(seen) <= max_group else None


def learn(
    examples,
    vocab,
    merges,
    scores,
    token_len,
    max_rounds,
    margin_rel,
    targets=None,
    guards=None,
    max_group=1024,
):
    """Greedy repair of the scores on the examples [(piece, ids, weight)]; returns (scores, history, the
    RepairIndex: every example's lattice, label and Viterbi output under the final scores). targets: which
    examples a repair may try to fix (None: all); the others only guard, counting against a change that
    breaks them. guards: PairGuards, whose loss counts against a change too (None: none). max_group: the
    most tokens a group move (a token and every token built on it) may hold."""
    up = merged_from(vocab, merges)
    max_len = max(map(len, vocab))
    lats = [
        lattice(p, vocab, max_len)
        for p, _, _ in tqdm(examples, desc="lattices", unit="ex", mininterval=1, leave=False)
    ]
    index = RepairIndex(
        lats,
        [y for _, y, _ in examples],
        [w for _, _, w in examples],
        [len(p) for p, _, _ in examples],
        token_len,
    )
    index.targets = targets  # read by change_gain: a wrong example that is no target adds nothing
    scores[:] = as_tokenizers_reads(scores, until_stable=True)
    index.refresh_all(scores, progress="Viterbi of every example")
    history = [index.wrong_weight()]
    # A repair attempt is a function of the scores alone (the skip index changes its cost, not its result),
    # so an example that failed is not tried again until some score has moved since.
    moves, failed_at = 0, {}
    for rnd in range(max_rounds):
        wrong = sorted(
            (k for k, r in enumerate(index.right) if not r and (targets is None or targets[k])),
            key=lambda k: (-examples[k][2], examples[k][0]),
        )
        applied = 0
        for k in tqdm(wrong, desc=f"repair round {rnd + 1}", unit="ex", mininterval=1, leave=False):
            if index.right[k] or failed_at.get(k) == moves:
                continue
            if repair_example(k, index, scores, up, margin_rel, guards, max_group):
                applied, moves = applied + 1, moves + 1
            else:
                failed_at[k] = moves
        moves += bool(
            settle(index, scores, progress=f"round {rnd + 1}: Viterbi of the examples touched")
        )
        history.append(index.wrong_weight())
        log.info(
            f"repair round {rnd + 1}: {applied:,} changes, wrong example weight {history[-1]:,}"
        )
        if not applied:
            break
    if guards:
        log.info("pair guards: " + ", ".join(f"{k} {v:,}" for k, v in guards.summary().items()))
    return scores, history, index


def settle(index, scores, progress=None):
    """Round the scores to what tokenizers reads back from a tokenizer.json and refresh the examples that
    a rounding touched or whose bounds drifted (so index is exact again); returns the tokens rounded."""
    before = list(scores)
    scores[:] = as_tokenizers_reads(scores, until_stable=True)
    moved = [i for i, (x, y) in enumerate(zip(before, scores)) if x != y]
    index.refresh_touched(moved, scores, progress=progress)
    return moved


def repair_example(k, index, scores, up, margin_rel, guards=None, max_group=1024):
    """Try raising one token of BPE's segmentation of example k, or lowering one token of its Viterbi output,
    just enough, alone or with every token built on it by the same amount (as if its merge weighed more or
    less). A group move leaves each token's comparisons with its own extensions ('urn' with 'return') as
    they were, where BPE's merge order decides them, and keeps ties that float64 cannot resolve in order;
    max_group caps a group's tokens. Keep the change that fixes the most example weight net, counted on the
    examples it can affect (RepairIndex.affected), less what it breaks among the guard strings
    (guards.loss, only for a change that would win without it); True if one was kept."""
    y, y_hat = index.labels[k], viterbi(index.lats[k], scores)
    diff = collections.Counter(y)
    diff.subtract(y_hat)
    s_y, s_hat = path_score(y, scores), path_score(y_hat, scores)
    # the margin must outgrow float64 rounding of every score it touches
    need = (
        s_hat - s_y + margin_rel * max(abs(s_y), abs(s_hat), *(abs(scores[i]) for i in diff), 1.0)
    )
    candidates = [[i] for i, v in sorted(diff.items()) if v]
    candidates += [
        t for i, v in sorted(diff.items()) if v and (t := built_on(i, up, max_group)) and len(t) > 1
    ]
    best = None
    for group in candidates:
        delta = need / diff[group[0]]  # > 0 raises a BPE token, < 0 lowers a Viterbi one
        affected = index.affected(group, delta, scores)
        # the first best candidate wins, and only a gain > 0 is kept: a candidate that cannot beat both is
        # dropped as soon as that is certain
        beat = best[0] if best else 0
        gain = change_gain(index, group, delta, scores, affected, beat)
        if gain is not None and guards is not None:
            gain -= guards.loss(group, delta, scores)
            if gain <= beat:
                guards.outweighed, gain = guards.outweighed + 1, None
        if gain is not None:
            best = (gain, group, delta, affected)
    if best:
        index.apply(best[1], best[2], scores, best[3])
        return True
    return False


def change_gain(index, group, delta, scores, affected, beat):
    """Net example weight fixed by moving the tokens of group by delta, or None once it cannot exceed beat
    (the scores are restored). The wrong target examples go first (each can only add), then the right ones
    (each can only subtract); a wrong example that is no target (a guard: index.targets) counts nothing."""
    old = [scores[i] for i in group]
    for i in group:
        scores[i] += delta
    affected = affected.tolist()
    targets = index.targets
    wrong = [h for h in affected if not index.right[h] and (targets is None or targets[h])]
    todo = wrong + [h for h in affected if index.right[h]]
    gain, chance = 0, sum(index.weights[h] for h in wrong)
    for h in todo:
        if gain + chance <= beat:
            gain = None
            break
        now = is_right(viterbi(index.lats[h], scores), index.labels[h])
        if index.right[h]:
            gain -= index.weights[h] * (not now)
        else:
            chance -= index.weights[h]
            gain += index.weights[h] * now
    if gain is not None and gain <= beat:
        gain = None
    for i, x in zip(group, old):
        scores[i] = x
    return gain


# -----------------------------------------------------------------------------
# exact repair: one LP per train piece the greedy left wrong (lib/certify.least_change, HiGHS)
#
# The greedy moves one token, or one token with its extensions, at a time; '(-(-' needs four moved at
# once. For each wrong train piece, heaviest first, a linear program asks for the score changes of least
# weighted |change| that make BPE's segmentation beat every path Viterbi finds by the margin. Every example
# and pair-guard string the change would turn wrong then joins the LP with its row (cutting planes over
# strings as well as paths), until the change breaks none: it is kept. An infeasible LP's dual ray names
# the few rows (of thousands) that cannot hold together: they are checked exactly (lib/certify.prove),
# and their strings go to certify with the piece's neighbours. A token costs log2(2 + the
# examples holding it), so the LP prefers moving rare tokens, which disturb less text. A wide change can
# keep every example right and still break strings that no example holds, most often where two of its
# moved tokens meet ('200' + '430'): so those joined pairs are guard strings too (PairGuards.joined).


def exact_repair(index, examples, in_train, scores, guards, cfg):
    """least_fix for each wrong train piece (heaviest first, up to exact_repair_max_pieces, within
    exact_repair_time_limit). Returns {"pieces": {piece: verdict}, "counts", "seconds", "held": {piece whose
    LP was infeasible: least_fix's {"strings": [(name, lattice, label)], "proof"}, for certify}}."""
    wrong = sorted(
        (k for k, r in enumerate(index.right) if not r and in_train[k]),
        key=lambda k: (-examples[k][2], examples[k][0]),
    )
    cost = np.log2(2.0 + np.diff(index.tok_ptr))
    t0 = time.monotonic()
    deadline = t0 + cfg["exact_repair_time_limit"]
    pieces, held = {}, {}
    for k in tqdm(
        wrong[: cfg["exact_repair_max_pieces"]], desc="exact repair", unit="piece", leave=False
    ):
        name = examples[k][0]
        if time.monotonic() > deadline:
            pieces[name] = "time limit"
        elif index.right[k]:
            pieces[name] = "fixed (by an earlier fix)"
        else:
            string = (name, index.lats[k], index.labels[k])
            pieces[name], strings = least_fix(
                string, ("example", k), examples, index, scores, guards, cost, cfg, deadline
            )
            if pieces[name].startswith("LP") and time.monotonic() > deadline:
                pieces[name] = (
                    "time limit"  # its LP was cut off by the phase's limit: counted with the untried
                )
            if strings:
                held[name] = strings
            if guards:
                guards.pairs.clear()  # up to exact_repair_max_tokens ** 2 joined strings: memory stays one fix's
    settle(index, scores, progress="exact repair: Viterbi of the examples touched")
    counts = collections.Counter(pieces.values())
    log.info(
        f"exact repair: {len(wrong):,} wrong train pieces, {len(pieces):,} tried: "
        + ", ".join(f"{v:,} {c}" for c, v in sorted(counts.items()))
        + f"; wrong example weight {index.wrong_weight():,}"
    )
    if counts["time limit"]:
        log.warning(
            f"exact repair: {counts['time limit']:,} pieces left untried (or cut off) at exact_repair_time_limit "
            f"({cfg['exact_repair_time_limit']} s): the tokenizer keeps the scores found so far; raise it in configs/distill.yaml"
        )
    return {
        "wrong_train_pieces": len(wrong),
        "pieces": pieces,
        "counts": dict(counts),
        "wrong_weight": index.wrong_weight(),
        "seconds": round(time.monotonic() - t0, 1),
        "held": held,
    }


def least_fix(string, key, examples, index, scores, guards, cost, cfg, deadline, apply=True):
    """Fix string (name, lattice, BPE label; key: ('example', k) when it is example k, else None) by
    least_change over the strings held (it first), adding each string the change turns wrong and each path
    that beats a held label (broken_by), until nothing breaks. Returns ('fixed', None) with the change
    applied (apply False: 'fixable', the scores unchanged); ('infeasible', {"strings": those whose rows make
    up the LP's dual ray, it first (a handful of those held, for certify), "proof": lib/certify.prove of
    those rows as a conflict record (prove_record), or None}); or why it gave up ('too wide', 'too many
    strings', 'LP <status>', 'unsettled (float tie)'), the scores unchanged."""
    held, keys = [string], {key} - {None}
    path = tuple(viterbi(string[1], scores))
    rows, seen = [score_row(string[2], path, scores, cfg["margin_rel"])], {(string[0], path)}
    owner, against = [0], [path]  # rows[r] is held[owner[r]]'s label against the path against[r]
    while True:
        if len(held) > cfg["exact_repair_max_strings"]:
            return "too many strings", None
        status, delta = least_change(rows, cost, deadline - time.monotonic())
        if status == "infeasible":
            ray = delta or range(len(rows))
            proof = prove_record(
                [(held[owner[r]], against[r]) for r in ray], index.token_len, deadline
            )
            return "infeasible", {
                "strings": [held[h] for h in sorted({0} | {owner[r] for r in ray})],
                "proof": proof,
            }
        if status != "feasible":
            return f"LP {status}", None
        if len(delta) > cfg["exact_repair_max_tokens"]:
            return "too wide", None
        beaten = broken_by(delta, held, keys, examples, index, scores, guards)
        if not beaten:
            if not apply:
                return "fixable", None
            index.apply_many(delta, scores)
            return "fixed", None
        if all((string[0], tuple(path)) in seen for string, path, _ in beaten):
            return "unsettled (float tie)", None  # the LP met those rows, float64 Viterbi did not
        place = {
            id(string): h for h, string in enumerate(held)
        }  # a held string comes back as itself
        for string, path, new in beaten:
            if new:
                place[id(string)] = len(held)
                held.append(string)
            seen.add((string[0], tuple(path)))
            rows.append(score_row(string[2], path, scores, cfg["margin_rel"]))
            owner.append(place[id(string)])
            against.append(tuple(path))


def broken_by(delta, held, keys, examples, index, scores, guards):
    """What moving each token t by delta[t] breaks: [((name, lattice, label), the path that now beats the
    label, new)]: a held string still beaten (new False), or an example or a guard string (PairGuards: of a
    moved token, or two moved tokens joined) that was right and turns wrong (new True; its key joins
    keys). The scores are restored."""
    maybe = [
        h
        for h in index.affected_many(delta, scores).tolist()
        if index.right[h] and ("example", h) not in keys
    ]
    moved = sorted(delta)
    guard = (
        [g for t in moved for g in guards.strings(t)]
        + (guards.joined(moved) if len(moved) > 1 else [])
        if guards
        else []
    )
    guard = {("guard", p): (p, lat, y) for lat, y, p in guard}
    guard = [
        (key, g)
        for key, g in guard.items()
        if key not in keys and is_right(viterbi(g[1], scores), g[2])
    ]
    old = {t: scores[t] for t in delta}
    for t, d in delta.items():
        scores[t] += d
    out = [(g, path, False) for g in held if not is_right(path := viterbi(g[1], scores), g[2])]
    for key, g in [
        (("example", h), (examples[h][0], index.lats[h], index.labels[h])) for h in maybe
    ] + guard:
        path = viterbi(g[1], scores)
        if not is_right(path, g[2]):
            keys.add(key)
            out.append((g, path, True))
    for t, x in old.items():
        scores[t] = x
    return out


def score_row(label, path, scores, margin_rel):
    """(coef, need): sum coef[t] * d[t] >= need makes label beat path by the margin under scores + d. The
    margin outgrows float64 rounding of the sums (margin_rel) and HiGHS's tolerance of 1e-7 (1e-3 at least).

        >>> score_row((1,), (2, 3), [0.0, 5.0, 2.0, 2.0], 1e-12)      # 1 lacks 1e-3 - (5 - 4)
        ({1: 1, 2: -1, 3: -1}, -0.999)
    """
    diff = collections.Counter(label)
    diff.subtract(path)
    coef = {t: v for t, v in diff.items() if v}
    s_y, s_p = path_score(label, scores), path_score(path, scores)
    margin = max(
        4 * margin_rel * max(abs(s_y), abs(s_p), *(abs(scores[t]) for t in coef), 1.0), 1e-3
    )
    return coef, margin - (s_y - s_p)


def prove_record(pairs, token_len, deadline):
    """lib/certify.prove of [((name, lattice, label), path)]: {"kind": 'conflict' or 'tie', "cases": the names,
    "rows": [(name, label, path, margin, multiplier)]} (as certify's conflicts), or None."""
    rows = [label_row(string[2], path, token_len) for string, path in pairs]
    proved = prove(rows, deadline)
    if proved is None:
        return None
    kind, keep, lam = proved
    return {
        "kind": kind,
        "cases": sorted({pairs[i][0][0] for i in keep}),
        "verified": True,
        "rows": [
            (pairs[i][0][0], list(pairs[i][0][2]), list(pairs[i][1]), rows[i][1], str(x))
            for i, x in zip(keep, lam)
        ],
    }


# -----------------------------------------------------------------------------
# certification: which wrong train pieces no scores can fix (lib/certify.py: LP, cutting planes, Farkas)


def neighbours(index, label, path, limit, full, exclude=None):
    """Examples that may want the opposite of a piece with this BPE label and Viterbi path: first those
    whose lattice holds every token of the label that the path lacks, or every token of the path that the
    label lacks; then (full) those holding any of those tokens. Shortest first in each, up to limit."""
    diff = collections.Counter(label)
    diff.subtract(path)
    both, any_ = set(), set()
    for side in ([t for t, v in diff.items() if v > 0], [t for t, v in diff.items() if v < 0]):
        if side:
            holders = [
                set(index.pair_ex[index.tok_ptr[t] : index.tok_ptr[t + 1]].tolist()) for t in side
            ]
            both |= set.intersection(*holders)
            if full:
                any_ |= set.union(*holders)
    order = lambda hs: sorted(hs - {exclude}, key=lambda h: (int(index.lengths[h]), h))
    return (order(both) + order(any_ - both))[:limit]


def certify_mismatches(index, examples, in_train, token_strings, cfg, held=None):
    """For each wrong train piece (heaviest first, up to certify_max_pieces within certify_time_limit): an
    LP over it, the strings its exact repair held and its neighbours (check_pieces). Where that finds no
    conflict, the exact repair's own proof stands (held: {piece: least_fix's {"strings", "proof"}}): a
    conflict is 'certified', a tie 'forced tie (certified)'. Returns {"wrong_train_pieces", "pieces":
    {piece: verdict}, "counts" of the verdicts, "conflicts" and "ties": [each proved set, as token strings],
    "seconds"}."""
    held = held or {}
    wrong = sorted(
        (k for k, r in enumerate(index.right) if not r and in_train[k]),
        key=lambda k: (-examples[k][2], examples[k][0]),
    )
    todo = [
        (
            examples[k][0],
            index.lats[k],
            index.labels[k],
            index.paths[k],
            k,
            held.get(examples[k][0], {}).get("strings", [])[1:],
        )
        for k in wrong[: cfg["certify_max_pieces"]]
    ]
    result = check_pieces(
        todo, index, [p for p, _, _ in examples], token_strings, cfg, "certify wrong train pieces"
    )
    log.info(
        f"certify: {len(wrong):,} wrong train pieces (not permutations), {len(todo):,} checked: "
        + apply_proofs(result, held, token_strings)
    )
    return {"wrong_train_pieces": len(wrong), **result}


def apply_proofs(result, held, token_strings):
    """Where check_pieces found no conflict, least_fix's proof stands (held: {piece: {"strings", "proof"}}): a
    conflict makes the piece 'certified', a tie FORCED_TIE. Updates result's pieces, counts, conflicts and
    ties; returns the summary line."""
    result.pop("summary")
    result["ties"] = []
    for name, verdict in result["pieces"].items():
        proof = held.get(name, {}).get("proof")
        if proof and verdict != "certified":
            result["pieces"][name] = "certified" if proof["kind"] == "conflict" else FORCED_TIE
            result["conflicts" if proof["kind"] == "conflict" else "ties"].append(
                conflict_rows(proof, token_strings)
            )
    counts = collections.Counter(result["pieces"].values())
    result["counts"] = dict(counts)
    return (
        ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items()))
        + f"; {len(result['conflicts']):,} conflicts, {len(result['ties']):,} forced ties"
    )


def conflict_rows(conflict, token_strings):
    """A proved set's rows (certify's conflicts, prove_record) as token strings, for the report."""
    return [
        {
            "piece": n,
            "bpe": [token_strings[i] for i in y],
            "beaten_by": [token_strings[i] for i in p],
            "margin": m,
            "multiplier": lam,
        }
        for n, y, p, m, lam in conflict["rows"]
    ]


def check_pieces(todo, index, names, token_strings, cfg, desc):
    """Certify each (piece, lattice, BPE label, Viterbi path, its example index or None, more strings to hold
    [(name, lattice, label)]) of todo together with those strings and its neighbours among the learning's
    examples (names: their pieces), within certify_time_limit. Verdicts: 'certified' only when
    its conflict passed the exact Farkas check, 'no conflict among neighbours' only when scores were found
    for it and all its neighbours; else 'time limit' or 'unsettled (why)'."""
    token_len = [len(s) for s in token_strings]
    t0 = time.monotonic()
    deadline = t0 + cfg["certify_time_limit"]
    pieces, conflicts, seen = {}, [], set()
    for name, lat, label, path, k, extra in tqdm(todo, desc=desc, unit="piece", leave=False):
        left = deadline - time.monotonic()
        if left <= 0:
            pieces[name] = "time limit"
            continue
        group = neighbours(index, label, path, cfg["certify_neighbours"], full=True, exclude=k)
        group = [h for h in group if names[h] not in {n for n, _, _ in extra}]
        cases = (
            [(name, lat, label)]
            + [(names[h], index.lats[h], index.labels[h]) for h in group]
            + extra
        )
        # a held string starts from its label (no row): Viterbi under the LP's scores adds what beats it
        start = [path] + [index.paths[h] for h in group] + [y for _, _, y in extra]
        result = certify(cases, token_len, start, time_limit=min(left, cfg["certify_case_seconds"]))
        found = [c for c in result["conflicts"] if name in c["cases"]]
        mine = [c for c in found if c["verified"]]
        pieces[name] = (
            "certified"
            if mine
            else "unsettled (infeasible, the exact check failed)"
            if found
            else "no conflict among neighbours"
            if result["status"] in ("consistent", "conflicts")
            else "time limit"
            if result["status"] == "time limit"
            else "unsettled (" + result["status"] + ")"
        )
        for c in mine:
            key = tuple(c["cases"])
            if key not in seen:
                seen.add(key)
                conflicts.append(conflict_rows(c, token_strings))
    counts = collections.Counter(pieces.values())
    if counts["time limit"]:
        log.warning(
            f"{desc}: {counts['time limit']:,} left unchecked at certify_time_limit ({cfg['certify_time_limit']} s) "
            f"or certify_case_seconds; the tokenizer does not depend on it: raise them in configs/distill.yaml to check more"
        )
    return {
        "pieces": pieces,
        "counts": dict(counts),
        "conflicts": conflicts,
        "seconds": round(time.monotonic() - t0, 1),
        "summary": ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items()))
        + f"; {len(conflicts):,} conflicts",
    }


def unseen_wrong_pieces(art, cfg, distilled, original, vocab, scores):
    """The distinct pieces of held-out and out-of-domain text (the shipped pre-tokenizer's) that the distilled
    model segments unlike BPE, most frequent first, up to certify_unseen_max_pieces: [(piece, lattice,
    BPE label, Viterbi path, None)], and how many there were. Streamed in batches; the texts are read again
    by the validation."""
    counts = collections.Counter()
    texts = itertools.chain(
        iter_docs(require(art.heldout_docs, "corpus")),
        *(
            src["docs"]
            for src in ood_documents(
                cfg["ood_sources"],
                cfg["ood_max_bytes"],
                cfg["ood_emoji_docs"],
                cfg["eval_seed"],
                in_corpus=corpus_file_hashes(require(art.corpus_manifest, "corpus")),
            ).values()
        ),
    )
    for batch, _ in tqdm(
        text_batches(texts, cfg["eval_batch_bytes"], cfg["doc_max_bytes"]),
        desc="unseen text pieces",
        unit="batch",
        leave=False,
    ):
        for text in batch:
            counts.update(w for w, _ in distilled.pre_tokenizer.pre_tokenize_str(text))
    words = sorted(counts)
    wrong = [
        (counts[w], w, tuple(y.ids))
        for w, y, g in zip(
            words, bare(original).encode_batch(words), bare(distilled).encode_batch(words)
        )
        if y.ids != g.ids
    ]
    wrong.sort(key=lambda x: (-x[0], x[1]))
    max_len = max(map(len, vocab))
    todo = []
    for _, w, y in wrong[: cfg["certify_unseen_max_pieces"]]:
        lat = lattice(w, vocab, max_len)
        todo.append((w, lat, y, viterbi(lat, scores), None, []))
    return todo, len(wrong)


def certify_unseen(
    art, cfg, distilled, original, vocab, scores, index, examples, guards, token_strings
):
    """Certify the held-out and out-of-domain pieces the distilled model gets wrong against the learning's
    examples: a certified one cannot be fixed without breaking some BPE-labelled string the learning holds.
    Each first goes through least_fix without applying anything (unseen_fixes); then check_pieces with the
    strings of its infeasible LP, as for the train pieces. "fixable": those least_fix found a change for
    that breaks no example or guard string (the learning could have had them right)."""
    if not cfg["certify_unseen_max_pieces"]:
        return {}
    todo, n_wrong = unseen_wrong_pieces(art, cfg, distilled, original, vocab, scores)
    held, fixable = unseen_fixes(todo, examples, index, scores, guards, cfg)
    todo = [(*item[:5], held.get(item[0], {}).get("strings", [])[1:]) for item in todo]
    result = check_pieces(
        todo, index, [p for p, _, _ in examples], token_strings, cfg, "certify wrong unseen pieces"
    )
    summary = apply_proofs(result, held, token_strings)
    log.info(
        f"certify: {n_wrong:,} wrong held-out and out-of-domain pieces, {len(todo):,} checked: {summary}; "
        f"{len(fixable):,} fixable without breaking an example"
    )
    return {"wrong_unseen_pieces": n_wrong, **result, "fixable": fixable}


def unseen_fixes(todo, examples, index, scores, guards, cfg):
    """least_fix of each unseen piece of todo, nothing applied (the learning never sees them), each within
    certify_case_seconds and all within certify_time_limit: ({piece: its {"strings", "proof"}} where
    the LP was infeasible, [the pieces it found a change for])."""
    cost = np.log2(2.0 + np.diff(index.tok_ptr))
    deadline = time.monotonic() + cfg["certify_time_limit"]
    held, fixable = {}, []
    for n, (name, lat, label, *_) in enumerate(
        tqdm(todo, desc="exact LP of wrong unseen pieces", unit="piece", leave=False)
    ):
        if time.monotonic() > deadline:
            log.warning(
                f"exact LP of wrong unseen pieces: {len(todo) - n:,} left untried at certify_time_limit "
                f"({cfg['certify_time_limit']} s); the tokenizer does not depend on it: raise it in configs/distill.yaml"
            )
            break
        verdict, out = least_fix(
            (name, lat, label),
            None,
            examples,
            index,
            scores,
            guards,
            cost,
            cfg,
            min(deadline, time.monotonic() + cfg["certify_case_seconds"]),
            apply=False,
        )
        if verdict == "infeasible":
            held[name] = out
        fixable += [name] if verdict == "fixable" else []
        if guards:
            guards.pairs.clear()
    return held, fixable


# -----------------------------------------------------------------------------
# validation


CERTIFIED = "impossible for any scores (certified)"
FORCED_TIE = "forced tie (certified)"


def classify(word, bpe, got, token_strings, certified=()):
    """Why the distilled segmentation differs: a permutation of BPE's tokens (a tie no score breaks: a run
    the split leaves whole), a piece of the word in a certified conflict (certify_mismatches: no scores
    reproduce BPE on it and the strings it conflicts with) or in a forced tie (scores reproduce it only with
    two segmentations scoring exactly the same: rounding decides), a differing cut in or at the edge of a
    run of 3+ of one character (BPE pairs the run before its neighbour, which scores cannot always say),
    else the order of the scores. certified: ({piece: 'certified' or FORCED_TIE}, the run split that cuts a
    word into pieces)."""
    if sorted(bpe) == sorted(got):
        return "permutation tie (a run the split leaves whole)"
    if certified and certified[0]:
        pieces = [p for p, _ in certified[1].pre_tokenize_str(word)] if certified[1] else [word]
        verdicts = {certified[0][p] for p in pieces if p in certified[0]}
        if verdicts:
            return CERTIFIED if "certified" in verdicts else FORCED_TIE
    cuts_b = set(np.cumsum([len(token_strings[i]) for i in bpe]).tolist())
    cuts_g = set(np.cumsum([len(token_strings[i]) for i in got]).tolist())
    runs = [m.span() for m in re.finditer(r"(.{1,4}?)\1{2,}", word)]
    if any(lo <= c <= hi for c in cuts_b ^ cuts_g for lo, hi in runs):
        return "run in context (a cut in or at a run of 3+)"
    return "score order (left by the repairs)"


def agreement(words, bpe, counts, models, token_strings, n_examples, batch=50_000, desc=None):
    """Per pre-token occurrence / distinct pre-token agreement, and the mismatches grouped by class.
    words: distinct byte-level pre-tokens; bpe: GPT-2's ids of each (tuples); counts: their occurrences."""
    distilled_bare, certified = models[2], (models[4], models[3].stage() if models[3] else None)
    occ = ok_occ = ok_distinct = 0
    classes = collections.defaultdict(lambda: {"occurrences": 0, "distinct": 0, "examples": []})
    starts = range(0, len(words), batch)
    for a in (
        tqdm(starts, desc=desc, unit="batch", mininterval=1, leave=False)
        if desc and len(starts) > 1
        else starts
    ):
        got = distilled_bare.encode_batch(words[a : a + batch])
        for w, y, n, e in zip(words[a : a + batch], bpe[a : a + batch], counts[a : a + batch], got):
            occ += n
            g = tuple(e.ids)
            if g == y:
                ok_occ += n
                ok_distinct += 1
                continue
            c = classes[classify(w, y, g, token_strings, certified)]
            c["occurrences"] += n
            c["distinct"] += 1
            c["examples"].append(
                (n, w, [token_strings[i] for i in y], [token_strings[i] for i in g])
            )
    for c in classes.values():
        c["examples"] = [
            {"count": n, "pretoken": w, "bpe": b, "distilled": g}
            for n, w, b, g in sorted(c["examples"], key=lambda x: (-x[0], x[1]))[:n_examples]
        ]
    return {
        "pretoken_occurrences": occ,
        "pretoken_occurrence_agreement": ok_occ / max(occ, 1),
        "distinct_pretokens": len(words),
        "distinct_pretoken_agreement": ok_distinct / max(len(words), 1),
        "mismatches": dict(sorted(classes.items())),
    }


def text_batches(texts, batch_bytes, max_doc_bytes):
    """Yield (texts of about batch_bytes, documents over max_doc_bytes left out of this batch)."""
    batch, size, skipped = [], 0, 0
    for text in texts:
        n = len(text.encode("utf-8"))
        if n > max_doc_bytes:
            skipped += 1
            continue
        batch.append(text)
        size += n
        if size >= batch_bytes:
            yield batch, skipped
            batch, size, skipped = [], 0, 0
    if batch or skipped:
        yield batch, skipped


def evaluate_texts(texts, models, token_strings, cfg, desc, n_bench=0):
    """Agreement per pre-token occurrence, distinct pre-token and whole document, with mismatch classes, on
    texts streamed in batches of eval_batch_bytes (memory holds one batch and the distinct pre-tokens).
    models: (original, distilled, distilled_bare, run split, certified pieces). Returns (result, the first n_bench
    bytes of texts, for the throughput)."""
    original, distilled = models[:2]
    gpt2_pt = pre_tokenizer_gpt2()
    counts = collections.Counter()
    docs = same = ids_compared = left_out = bench_bytes = 0
    bench = []
    bar = tqdm(desc=desc, unit="B", unit_scale=True, mininterval=1, leave=False)
    for batch, skipped in text_batches(texts, cfg["eval_batch_bytes"], cfg["doc_max_bytes"]):
        left_out += skipped
        for text in batch:
            counts.update(w for w, _ in gpt2_pt.pre_tokenize_str(text))
        reference = original.encode_batch(batch, add_special_tokens=False)
        got = distilled.encode_batch(batch, add_special_tokens=False)
        docs += len(batch)
        same += sum(r.ids == g.ids for r, g in zip(reference, got))
        ids_compared += sum(len(r.ids) for r in reference)
        for text in batch:
            if bench_bytes < n_bench:
                bench.append(text)
                bench_bytes += len(text.encode("utf-8"))
        bar.update(sum(len(t.encode("utf-8")) for t in batch))
    bar.close()
    words = sorted(counts)
    bpe = [tuple(e.ids) for e in bare(original).encode_batch(words)] if words else []
    result = agreement(
        words, bpe, [counts[w] for w in words], models, token_strings, cfg["report_examples"]
    )
    result.update(
        {
            "documents": docs,
            "document_agreement": same / max(docs, 1),
            "ids_compared": ids_compared,
            "documents_left_out_too_long": left_out,
        }
    )
    return result, bench


def train_agreement(table, sample, models, token_strings, cfg):
    """Train agreement: per occurrence and per distinct pre-token over the whole table; per document on the
    document sample (texts, GPT-2 ids, facts), encoded in batches."""
    distilled = models[1]
    result = agreement(
        table.pretokens,
        table.all_ids(),
        table.counts.tolist(),
        models,
        token_strings,
        cfg["report_examples"],
        desc="train agreement (pre-token table)",
    )
    texts, ids_list, facts = sample
    same = start = 0
    for batch, _ in tqdm(
        text_batches(texts, cfg["eval_batch_bytes"], float("inf")),
        desc="train agreement (document sample)",
        unit="batch",
        mininterval=1,
        leave=False,
    ):
        got = distilled.encode_batch(batch, add_special_tokens=False)
        same += sum(
            np.array_equal(ref, e.ids) for ref, e in zip(ids_list[start : start + len(batch)], got)
        )
        start += len(batch)
    result.update(
        {
            "documents": len(texts),
            "document_agreement": same / max(len(texts), 1),
            "ids_compared": int(sum(len(x) for x in ids_list)),
            "document_sample": facts,
        }
    )
    return result


class Phases:
    """Names each phase in the log as it starts, and keeps the seconds of each for the report."""

    def __init__(self):
        self.seconds, self.name, self.t0 = {}, None, None

    def start(self, name):
        self.stop()
        log.info(f"phase: {name}")
        self.name, self.t0 = name, time.perf_counter()

    def stop(self):
        if self.name:
            self.seconds[self.name] = round(
                self.seconds.get(self.name, 0) + time.perf_counter() - self.t0, 1
            )
        self.name = None


def read_config(args):
    """The resolved config (lib/schema.py checks every key)."""
    return step_config("distill", args)


def token_tables(vocab):
    """(token string of each id, its bytes), EOT included."""
    token_strings, id_bytes = [None] * VOCAB_SIZE, [None] * VOCAB_SIZE
    for s, i in vocab.items():
        token_strings[i], id_bytes[i] = s, piece_bytes(s)
    token_strings[EOT_ID], id_bytes[EOT_ID] = EOT, EOT.encode()
    return token_strings, id_bytes


def make_run_split(original, vocab, merges, cfg):
    """The run split (lib/runsplit.py), or None when the config turns it off."""
    split = (
        build_run_split(bare(original), vocab, merges, cfg["run_split_max_len"])
        if cfg["run_split"]
        else None
    )
    log.info(
        f"run split: {f'on, {len(split.units)} run characters, {len(split.pattern):,} regex chars' if split else 'off'}"
    )
    return split


def validate(table, sample, models, token_strings, art, cfg, phases):
    """Agreement on train (the table; documents: the sample), held-out (streamed), out-of-domain text, and
    decode identity. Returns (report parts, texts for the throughput, texts for the tokenizers.js parity)."""
    original, distilled = models[:2]
    out = {}
    phases.start("validation: train")
    out["train"] = train_agreement(table, sample, models, token_strings, cfg)
    phases.start("validation: held-out")
    out["heldout"], bench = evaluate_texts(
        iter_docs(require(art.heldout_docs, "corpus")),
        models,
        token_strings,
        cfg,
        "held-out agreement",
        n_bench=cfg["throughput_bytes"],
    )
    parity = {"held-out": budget(bench, cfg["js_parity_max_bytes"])}
    phases.start("validation: out of domain")
    out["out_of_domain"] = {}
    for kind, src in ood_documents(
        cfg["ood_sources"],
        cfg["ood_max_bytes"],
        cfg["ood_emoji_docs"],
        cfg["eval_seed"],
        in_corpus=corpus_file_hashes(require(art.corpus_manifest, "corpus")),
    ).items():
        result = (
            evaluate_texts(src["docs"], models, token_strings, cfg, f"out of domain: {kind}")[0]
            if src["docs"]
            else {}
        )
        for key in ("documents_left_out_too_long",):
            result.pop(key, None)
        parity[kind] = budget(src["docs"], cfg["js_parity_max_bytes"])
        out["out_of_domain"][kind] = {
            **result,
            "patterns": src["patterns"],
            "files": src["files"],
            "note": src["note"],
        }
        if not src["docs"]:
            log.warning(f"out of domain: {kind}: {src['note']} ({', '.join(src['patterns'])})")
    phases.start("validation: decode identity")
    out["decode_identity"] = decode_identity(
        original, distilled, cfg["decode_samples"], cfg["decode_max_len"], cfg["eval_seed"]
    )
    size = sum(len(t.encode("utf-8")) for t in bench)
    for text in sample[0]:  # held-out first, then train documents, up to throughput_bytes
        if size >= cfg["throughput_bytes"]:
            break
        bench.append(text)
        size += len(text.encode("utf-8"))
    parity = {k: v for k, v in parity.items() if v}
    if parity:
        parity["tricky"] = tricky_texts(models[3].units if models[3] else [])
    return out, bench, parity


def write_outputs(art, cfg, profile, distilled, original, texts, report, t_start):
    """The tokenizer (temp dir + rename) checked to load back, to give the same ids in tokenizers.js
    (lib/parity.py) and timed as loaded, then the reports. texts: (throughput texts, parity texts)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    with atomic_path(art.distilled_tokenizer) as tmp:
        save_hf_tokenizer(distilled, tmp)
        bench, parity = texts
        report["js_parity"] = (
            check_parity(tmp, parity, cfg["js_parity"], "configs/distill.yaml")
            if parity
            else {"checked": False, "why": "js_parity_max_bytes is 0"}
        )
        report["throughput"] = throughput(
            Tokenizer.from_file(str(art.original_tokenizer / "tokenizer.json")),
            Tokenizer.from_file(str(tmp / "tokenizer.json")),
            bench,
            cfg["throughput_repeats"],
        )
        hf = AutoTokenizer.from_pretrained(str(tmp))
        probe = "def f(x):\n    return x  # ====\n\n\n<|endoftext|> 안녕 😀 ㅋㅋㅋ ————"
        report["loads_with_autotokenizer"] = hf(probe)["input_ids"] == original.encode(probe).ids
        save_config(cfg, tmp / f"{STEP}.config.yaml", STEP, profile)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(art.reports / "distill_validation.json", report)
    write_text(art.reports / "distill_validation.md", report_md(report))


def log_summary(report):
    results = [("train", report["train"]), ("heldout", report["heldout"])]
    results += [
        (f"out of domain: {k}", a)
        for k, a in report["out_of_domain"].items()
        if a.get("pretoken_occurrences")
    ]
    for name, a in results:
        log.info(
            f"{name}: {100 * a['pretoken_occurrence_agreement']:.4f}% of {a['pretoken_occurrences']:,} pre-token "
            f"occurrences, {100 * a['distinct_pretoken_agreement']:.4f}% of {a['distinct_pretokens']:,} distinct, "
            f"{100 * a['document_agreement']:.2f}% of {a['documents']:,} documents exact"
        )
    log.info(
        f"decode identity: {report['decode_identity']['mismatches']:,} mismatches; throughput ratio "
        f"{report['throughput']['ratio']}; {report['seconds']} s, peak RSS {report['peak_rss_mb']:,.0f} MB"
    )


def main():
    args = parse_step_args("distill", __doc__)
    art = Artifacts(args.artifacts)
    cfg = read_config(args)
    setup_logging(STEP, art.log_file(STEP))
    t_start, phases = time.perf_counter(), Phases()

    phases.start("reading")
    original, vocab, merges = read_original(art.original_tokenizer)
    token_strings, id_bytes = token_tables(vocab)
    table = read_table(art)
    sample = sample_documents(
        require(art.bpe_sequences, "analyze"),
        table.meta.get("documents", 0),
        cfg["train_doc_sample"],
        cfg["doc_max_bytes"],
        id_bytes,
    )

    phases.start("run split")
    split = make_run_split(original, vocab, merges, cfg)
    splitter = split.stage() if split else None
    phases.start("labelled examples")
    generated = generated_labels(
        generated_texts(vocab, cfg["generated_examples"], cfg["seed"], cfg["generated_kinds"])
        + number_texts(cfg["number_examples_max_digits"]),
        original,
    )
    examples, in_train, targets, stats = labelled_examples(
        table, vocab, splitter, token_strings, cfg, generated
    )

    phases.start("learning")
    scores = merge_tree_scores(vocab, merges, cfg["power"], cfg["rank_offset"])
    guards = pair_guards(original, vocab, token_strings, splitter, examples, in_train, cfg)
    scores, history, index = learn(
        examples,
        vocab,
        merges,
        scores,
        [len(s) for s in token_strings],
        cfg["max_rounds"],
        cfg["margin_rel"],
        targets,
        guards,
        cfg["repair_group_max_tokens"],
    )
    exact = exact_repair(index, examples, in_train, scores, guards, cfg)
    phases.start("certify")
    certified = certify_mismatches(index, examples, in_train, token_strings, cfg, exact.pop("held"))
    distilled = build_unigram(vocab, scores, split)
    certified["unseen"] = certify_unseen(
        art, cfg, distilled, original, vocab, scores, index, examples, guards, token_strings
    )
    del examples, index
    phases.stop()
    certified_pieces = {
        p: v
        for part in (certified["unseen"], certified)
        for p, v in part.get("pieces", {}).items()
        if v in ("certified", FORCED_TIE)
    }
    models = (original, distilled, bare(distilled, split), split, certified_pieces)

    report = {
        "run_split": bool(split),
        "run_units": len(split.units) if split else 0,
        "split_conflicts": stats.pop("split_conflicts"),
        "certify": certified,
        "repair_history": history,
        "exact_repair": exact,
        "pair_guards": guards.summary() if guards else None,
        "seconds_learning": phases.seconds["learning"],
        "examples": stats,
    }
    parts, bench, parity = validate(table, sample, models, token_strings, art, cfg, phases)
    report.update(parts)
    phases.start("writing (and throughput)")
    report["phases_seconds"] = phases.seconds  # up to here; the log has the writing too
    write_outputs(art, cfg, args.profile, distilled, original, (bench, parity), report, t_start)
    phases.stop()
    log.info("phases: " + ", ".join(f"{k} {v} s" for k, v in phases.seconds.items()))
    log_summary(report)


if __name__ == "__main__":
    main()
