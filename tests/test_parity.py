"""tokenizers.js parity (lib/parity.py, scripts/js/parity.mjs): the same tokenizer.json gives the same ids
in tokenizers.js (the runtime of transformers.js) as in Python `tokenizers`, and a tokenizer that does
not is caught, by the check and by 04/06's refusal to write it. Skips in one line without Node."""

import json

import pytest

from lib.parity import budget, check, compare, first_difference, js_runtime_missing, tricky_texts
from lib.tokenizer import save_hf_tokenizer

needs_node = pytest.mark.skipif(js_runtime_missing() is not None, reason=str(js_runtime_missing()))


def with_split(tokenizer, pattern):
    """The tokenizer with a Split stage of `pattern` after its ByteLevel pre-tokenizer."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers

    t = Tokenizer.from_str(tokenizer.to_str())
    t.pre_tokenizer = pre_tokenizers.Sequence(
        [t.pre_tokenizer, pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)]
    )
    return t


# A split with \\G (where the last match ended, or the piece's start): Oniguruma cuts no '-' that is not
# at the start of a pre-token; tokenizers.js drops the \\G and cuts every '-'.
G_SPLIT = "\\G-"


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory, gpt2_bpe):
    out = tmp_path_factory.mktemp("gpt2")
    save_hf_tokenizer(gpt2_bpe, out)
    return out


@pytest.fixture(scope="module")
def g_split_dir(tmp_path_factory, gpt2_bpe):
    out = tmp_path_factory.mktemp("gsplit")
    save_hf_tokenizer(with_split(gpt2_bpe, G_SPLIT), out)
    return out


def test_first_difference_and_budget():
    assert first_difference([1, 2, 3], [1, 5]) == 1 and first_difference([1, 2], [1, 2, 3]) == 2
    assert budget(["ab", "cde", "f", ""], 3) == ["ab", "f"]


@needs_node
def test_gpt2_bpe_is_portable(gpt2_dir):
    texts = tricky_texts(["-", "=", "#", "ãħĭ", "âĶĢ", "0", "l"]) + ["x\n" * 400]
    report = compare(gpt2_dir, texts)
    assert report["documents"] == len(texts) and report["documents_differ"] == 0, report["first"]


@needs_node
def test_a_G_split_gives_other_ids_in_tokenizers_js(g_split_dir):
    """The check can fail: with \\G in the split, tokenizers.js cuts '------' otherwise."""
    report = compare(g_split_dir, ["a ------ b", "plain text"])
    assert report["documents_differ"] == 1 and report["first"]["document"] == 0
    assert report["first"]["python"] != report["first"]["tokenizers_js"]


@needs_node
def test_check_stops_or_warns_on_a_difference(g_split_dir, caplog):
    texts = {"held-out": ["plain text"], "tricky": ["a ------ b"]}
    with pytest.raises(SystemExit) as stop:
        check(g_split_dir, texts, "error", "configs/distill.yaml")
    message = str(stop.value)
    assert (
        "is not portable" in message and "'a ------ b'" in message and "js_parity: warn" in message
    )
    assert "\n" not in message
    report = check(g_split_dir, texts, "warn", "configs/distill.yaml")
    assert (
        report["checked"]
        and report["documents_differ"] == 1
        and report["first"]["kind"] == "tricky"
    )
    assert report["by_kind"] == {"held-out": 1, "tricky": 1}


def test_check_without_node_says_so(gpt2_dir, monkeypatch):
    import lib.parity

    monkeypatch.setattr(
        lib.parity, "js_runtime_missing", lambda: "node is not on PATH (install Node)"
    )
    report = check(gpt2_dir, {"held-out": ["x"]}, "error", "configs/distill.yaml")
    assert report == {"checked": False, "why": "node is not on PATH (install Node)"}


@needs_node
def test_node_script_reports_a_bad_tokenizer_in_one_line(tmp_path):
    from lib.parity import js_ids

    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "Nope"}}))
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(RuntimeError, match="cannot load this tokenizer"):
        js_ids(tmp_path, ["x"])
