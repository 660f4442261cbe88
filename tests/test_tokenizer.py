"""01's offline tokenizer is GPT-2's: checked against a tiny pure-Python GPT-2 BPE written here."""

import json
from functools import lru_cache

import pytest
import regex

from conftest import run_script
from lib.tokenizer import EOT, EOT_ID, VOCAB_SIZE, gpt2_packaged_files

# OpenAI's GPT-2 pre-tokenizer pattern (encoder.py).
PAT = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


def bytes_to_unicode():
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
    return dict(zip(bs, map(chr, cs)))


class ReferenceBPE:
    """GPT-2's BPE as OpenAI wrote it: merge the lowest-ranked adjacent pair until none is left."""

    def __init__(self):
        encoder_path, merges_path = gpt2_packaged_files()
        self.encoder = json.loads(encoder_path.read_text(encoding="utf-8"))
        merges = merges_path.read_text(encoding="utf-8").split("\n")[1:]
        self.ranks = {tuple(m.split()): i for i, m in enumerate(merges) if m}
        self.byte_encoder = bytes_to_unicode()
        self.bpe = lru_cache(maxsize=None)(self._bpe)

    def _bpe(self, token):
        word = list(token)
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode(self, text):
        ids = []
        for piece in PAT.findall(text):
            token = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token))
        return ids


TEXTS = [
    "Hello world! It's a test, isn't it? We'll see; they've said I'd go.",
    "안녕하세요, 세계! 한국어 텍스트입니다.",
    "emoji 😀🎉👩‍👩‍👧 and flags 🇰🇷 and math ∑∫√",
    "    four spaces\n\n\n   three\t\ttabs  \r\n trailing   ",
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n",
    '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); return 0; }',
    "12345678901234567890 3.14159 1e-10 0xDEADBEEF",
    "中文字符和日本語のテキスト、混在。",
    "=========\n#####\n-----\n_______\n\n\n\n",
    " Ġ Ċ ĠĠ ü é ñ ß Ω ω",
    "",
]


@pytest.fixture(scope="module")
def original_dir(tmp_path_factory, tiny_gpt2_dir):
    art = tmp_path_factory.mktemp("art")
    run_script("01_init.py", "--artifacts", art, "--model-name", tiny_gpt2_dir)
    return art / "tokenizers" / "original"


@pytest.mark.parametrize("text", TEXTS)
def test_init_tokenizer_matches_reference_bpe(original_dir, text):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(original_dir / "tokenizer.json"))
    reference = ReferenceBPE()
    assert tokenizer.encode(text).ids == reference.encode(text)
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_init_tokenizer_is_gpt2_shaped(original_dir):
    from transformers import AutoTokenizer

    spec = json.loads((original_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert spec["model"]["type"] == "BPE"
    assert spec["pre_tokenizer"] == {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": True,
        "use_regex": True,
    }
    assert spec["decoder"]["type"] == "ByteLevel"
    hf = AutoTokenizer.from_pretrained(str(original_dir))
    assert len(hf) == VOCAB_SIZE
    assert hf.convert_tokens_to_ids(EOT) == EOT_ID == hf.eos_token_id
    assert hf("a<|endoftext|>b").input_ids == [64, EOT_ID, 65]
    assert hf.decode([EOT_ID, 15496], skip_special_tokens=True) == "Hello"


def test_reference_bpe_sanity():
    # The reference itself must not be trivially wrong: known GPT-2 ids.
    assert ReferenceBPE().encode("Hello world") == [15496, 995]


def test_byte_level_helpers_match_openai_bytes_to_unicode():
    """to_byte_level (str.translate) maps every byte as OpenAI's bytes_to_unicode; piece_bytes inverts it."""
    from lib.tokenizer import piece_bytes, to_byte_level

    table = bytes_to_unicode()
    texts = [
        "",
        "plain ascii\n\t",
        "".join(map(chr, range(0x300))),
        "안녕 你好 😀 \u2028\ufeff",
        "\x00\x7f\x80\xff",
    ]
    for text in texts:
        expected = "".join(table[b] for b in text.encode("utf-8"))
        assert to_byte_level(text) == expected, text
        assert piece_bytes(expected) == text.encode("utf-8")
