"""GPT-2's BPE as the distillation sees it, and the Unigram tokenizers built from it.

>>> bpe = read_original("artifacts/tokenizers/original")
>>> scores = merge_tree_scores(bpe.vocab, bpe.merges, power=4.0, rank_offset=10.0)
>>> distilled = build_unigram(bpe.vocab, scores, split=None)
"""

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from lib.log import die, log
from lib.runsplit import build_run_split
from lib.tokenizer import (
    EOT,
    EOT_ID,
    VOCAB_SIZE,
    byte_level_pipeline,
    load_gpt2_tokenizer,
    piece_bytes,
)

N_MERGES = 50000


@dataclass
class Gpt2Bpe:
    """GPT-2's tokenizer and its tables: vocab {string: id} without EOT, merges [(a, b)] in rank order,
    and per id (EOT included) its byte-level string and its bytes."""

    original: object  # tokenizers.Tokenizer
    vocab: dict
    merges: list

    @cached_property
    def token_strings(self) -> list:
        strings = [None] * VOCAB_SIZE
        for s, i in self.vocab.items():
            strings[i] = s
        strings[EOT_ID] = EOT
        return strings

    @cached_property
    def id_bytes(self) -> list:
        return [
            piece_bytes(s) if i != EOT_ID else EOT.encode()
            for i, s in enumerate(self.token_strings)
        ]

    @cached_property
    def token_len(self) -> list:
        return [len(s) for s in self.token_strings]

    @cached_property
    def max_len(self) -> int:
        return max(map(len, self.vocab))


def read_original(tokenizer_dir) -> Gpt2Bpe:
    """GPT-2's tokenizer and tables from tokenizer_dir; dies unless it is GPT-2's."""
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
    return Gpt2Bpe(tokenizer, vocab, merges)


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


def read_scores(tokenizer_json) -> list:
    """The Unigram scores of a distilled tokenizer.json, by id, as tokenizers reads them."""
    from lib.unigram import as_tokenizers_reads

    model = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))["model"]
    if model.get("type") != "Unigram" or len(model.get("vocab", [])) != VOCAB_SIZE:
        die(
            f"{tokenizer_json}: not a distilled Unigram of {VOCAB_SIZE:,} ids; re-run `make distill`"
        )
    return as_tokenizers_reads([float(score) for _, score in model["vocab"]])


def make_run_split(bpe, cfg):
    """The run split of GPT-2's BPE (lib/runsplit.py), or None when the config turns it off."""
    split = (
        build_run_split(bare(bpe.original), bpe.vocab, bpe.merges, cfg["run_split_max_len"])
        if cfg["run_split"]
        else None
    )
    state = (
        f"on, {len(split.units)} run characters, {len(split.pattern):,} regex chars"
        if split
        else "off"
    )
    log.info(f"run split: {state}")
    return split
