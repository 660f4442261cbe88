"""
06 remap: the IVR tokenizer -- the distilled Unigram with each reassigned id's piece replaced.

    .venv/bin/python scripts/06_remap.py [--fuzz-texts 3000]
    make artifacts/tokenizers/remapped/tokenizer.json        (alias: make remap)

Reads remap_rules.yaml (05; protect and new_piece_bonus of configs/select.yaml), the distilled Unigram (04), the
held-out split (02, streamed in batches: memory follows its distinct pre-tokens, not its size) and GPT-2's
own tokenizer (01, for the comparison). Writes
  artifacts/tokenizers/remapped/               tokenizer.json + tokenizer_config.json (50,257 ids; loads
                                               with AutoTokenizer), 06_remap.config.yaml
  artifacts/analysis/reports/remap_report.json  tokens per byte on the held-out split (GPT-2, distilled,
                                               remapped), the saving curve, and the checks below
Every id outside the rules keeps its piece and score; the pre-tokenizer, decoder and added tokens stay
as found. A new piece c gets the score V(c) + B (k(c) - 1): k(c) pieces of total score V(c) is how the
distilled tokenizer (without the ids given away) cuts c, and B = new_piece_bonus x max |old score|. So
c replaces its old pieces wherever they occur together, and text without a new string never sees it.
Checks (a failure stops the step): decode(encode(x)) == x on the held-out split and on fuzz texts; every
pre-token that contains no new string and needs no given-away id encodes exactly as the distilled
tokenizer encodes it; AutoTokenizer loads it; tokenizers.js (transformers.js) gives the same ids (js_parity). Reported: new tokens never emitted on held-out, and why.
GPT-2's and the remapped tokenizer's held-out token counts come from encoding every document; the
distilled count and the curve come from the distinct held-out pre-tokens with their counts (the model
sees one pre-token at a time), checked to give the remapped count exactly.
"""

import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain, groupby
from operator import itemgetter
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import load_config, parse_step_args, save_config, step_config
from lib.files import atomic_path, iter_docs, require, sha256_file, write_json
from lib.ivr import (
    bonus_per_saved_token,
    kept_vocab,
    load_rules,
    new_piece_scores,
    protected_ids,
    read_unigram,
    tokens_from_counts,
    with_rules,
)
from lib.log import die, log, setup_logging
from lib.parity import budget, tricky_texts
from lib.parity import check as check_parity
from lib.paths import Artifacts
from lib.phases import phase, phases
from lib.remap_checks import check_round_trip, check_unchanged, fuzz_texts, not_emitted
from lib.tokenizer import EOT, VOCAB_SIZE, load_gpt2_tokenizer, save_hf_tokenizer

STEP = "06_remap"
SAMPLE_DOCS, SAMPLE_CHARS = 256, 4096  # held-out windows kept for the fuzz texts' slices


# -----------------------------------------------------------------------------
# the remapped tokenizer.json


def new_scores(pieces, rules, old_scores, new_piece_bonus):
    """V(c) + B (k(c) - 1) for each rule's new string c (lib/ivr.new_piece_scores, as 05 predicts with); B;
    and the largest |old score|. The old pieces that cut c are the distilled vocabulary less the ids given away."""
    bonus, max_abs = bonus_per_saved_token(old_scores, new_piece_bonus)
    vocab = kept_vocab(pieces, {rule["id"] for rule in rules})
    return (
        new_piece_scores([rule["new"] for rule in rules], vocab, old_scores, bonus),
        bonus,
        max_abs,
    )


def save_remapped(tmp, remapped_data, data, cfg, profile, distilled_dir):
    """Write the tokenizer dir into tmp and read it back: the pieces are the remapped ones, the rest as found."""
    from tokenizers import Tokenizer

    save_hf_tokenizer(Tokenizer.from_str(json.dumps(remapped_data)), tmp)
    save_config(cfg, tmp / f"{STEP}.config.yaml", STEP, profile)
    remapped = load_gpt2_tokenizer(tmp, expect_model="Unigram")
    written = json.loads((tmp / "tokenizer.json").read_text(encoding="utf-8"))
    if [p for p, _ in written["model"]["vocab"]] != [p for p, _ in remapped_data["model"]["vocab"]]:
        die(
            f"{tmp / 'tokenizer.json'}: the saved pieces are not the remapped ones (a tokenizers bug?)"
        )
    for key in ("normalizer", "pre_tokenizer", "decoder", "added_tokens"):
        if written.get(key) != data.get(key):
            die(
                f"{tmp / 'tokenizer.json'}: {key} changed on save; it must stay as in {distilled_dir}"
            )
    return remapped


def check_autotokenizer(tmp, remapped, rules, sample):
    """AutoTokenizer loads the dir with the same ids as tokenizer.json, and maps every new string to its id."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tmp))
    sample = sample + "".join(r["text"] for r in rules[:20])
    if (
        len(hf) != VOCAB_SIZE
        or hf(sample, add_special_tokens=False)["input_ids"]
        != remapped.encode(sample, add_special_tokens=False).ids
    ):
        die(
            f"{tmp}: AutoTokenizer loads {len(hf):,} ids or encodes differently from tokenizer.json"
        )
    for r in rules:
        if hf.convert_tokens_to_ids(r["new"]) != r["id"]:
            die(
                f"{tmp}: AutoTokenizer maps {r['text']!r} to {hf.convert_tokens_to_ids(r['new'])}, not {r['id']}"
            )


# -----------------------------------------------------------------------------
# the held-out split, streamed


@dataclass
class Stream:
    """What one pass over the held-out split leaves: totals, the distinct pre-tokens, a sample for the fuzz."""

    docs: int = 0
    bytes: int = 0
    gpt2: int = 0  # GPT-2 BPE tokens
    remapped: int = 0  # remapped tokens
    endoftext: int = (
        0  # <|endoftext|> inside the text (an added token: one id, never pre-tokenized)
    )
    id_counts: np.ndarray = field(
        default_factory=lambda: np.zeros(VOCAB_SIZE, dtype=np.int64)
    )  # remapped ids
    pre_counts: Counter = field(
        default_factory=Counter
    )  # the distilled pre-tokens and their counts
    failures: int = 0  # decode(encode(x)) != x
    first_failure: str = None
    sample: list = field(default_factory=list)  # held-out windows for the fuzz texts


def batches(path, batch_chars):
    """(documents, bytes of file read) of a cleaned-corpus jsonl file, in lists of about batch_chars characters."""
    batch, size, read = [], 0, 0
    with open(require(path, "corpus"), "rb") as f:
        for line_no, line in enumerate(f, 1):
            read += len(line)
            try:
                batch.append(json.loads(line)["text"])
            except (ValueError, KeyError, TypeError):
                die(f"{path}:{line_no}: not a cleaned-corpus record; re-run `make corpus`")
            size += len(batch[-1])
            if size >= batch_chars:
                yield batch, read
                batch, size, read = [], 0, 0
    if batch:
        yield batch, read


def count_words(encodings, out):
    """Add the pre-tokens of encoded texts to out.pre_counts: each is the join of the pieces of one word.

    The remapped tokenizer has the distilled one's pre-tokenizer (checked on save), and grouping its tokens by
    word costs far less than pre-tokenizing the text a second time. <|endoftext|> in the text is an added token,
    a word of its own that no pre-token can spell (the regex splits `<|`, `endoftext`, `|>`): counted apart.
    """
    counts, second = out.pre_counts, itemgetter(1)
    for e in encodings:
        for _, group in groupby(zip(e.word_ids, e.tokens), key=itemgetter(0)):
            counts["".join(map(second, group))] += 1
    out.endoftext += counts.pop(EOT, 0)


def keep_sample(out, text, rng):
    """Reservoir sampling of SAMPLE_DOCS documents (one window of each), seeded: the same split, the same sample."""
    j = out.docs if len(out.sample) < SAMPLE_DOCS else rng.randrange(out.docs + 1)
    if j < SAMPLE_DOCS:
        a = rng.randrange(max(len(text) - SAMPLE_CHARS, 0) + 1)
        if j == len(out.sample):
            out.sample.append(text[a : a + SAMPLE_CHARS])
        else:
            out.sample[j] = text[a : a + SAMPLE_CHARS]
    out.docs += 1


def stream_heldout(path, remapped, original, cfg):
    """One pass: GPT-2 and remapped token counts, the round trip, emitted ids, distinct pre-tokens, a sample.

    Memory follows one batch and the distinct pre-tokens, not the split's size."""
    phase("held-out split: encode, round trip, pre-tokens")
    out, rng = Stream(), random.Random(cfg["fuzz_seed"])
    bar = tqdm(total=Path(path).stat().st_size, desc="held-out", unit="B", unit_scale=True)
    for texts, read in batches(path, cfg["heldout_batch_chars"]):
        encodings = remapped.encode_batch(texts, add_special_tokens=False)
        ids = [e.ids for e in encodings]
        for text, back in zip(texts, remapped.decode_batch(ids, skip_special_tokens=False)):
            if back != text:
                out.failures += 1
                out.first_failure = text if out.first_failure is None else out.first_failure
        out.remapped += sum(map(len, ids))
        out.id_counts += np.bincount(
            np.fromiter(chain.from_iterable(ids), dtype=np.int64), minlength=VOCAB_SIZE
        )
        out.gpt2 += sum(len(e.ids) for e in original.encode_batch(texts, add_special_tokens=False))
        count_words(encodings, out)
        del encodings
        out.bytes += sum(len(t.encode("utf-8")) for t in texts)
        for text in texts:
            keep_sample(out, text, rng)
        bar.update(read)
    bar.close()
    return out


# -----------------------------------------------------------------------------
# fuzz texts


# -----------------------------------------------------------------------------
# checks and figures


def held_tokens(model, held):
    """Held-out tokens of a model from the distinct pre-tokens: what encoding every document gives."""
    return tokens_from_counts(model, held.pre_counts, held.endoftext)


def heldout_curve(data, rules, new_score, held, distilled, remapped, points):
    """Distilled tokens and the curve (tokens with the first N rules), from the held-out pre-token counts."""
    from tokenizers import Tokenizer

    phase("held-out curve")
    if (
        held_tokens(remapped.model, held) != held.remapped
    ):  # the counts method, against real encoding
        die(
            f"held-out tokens from pre-token counts differ from encoding the documents ({held.remapped:,}); "
            f"this is a bug in {STEP}"
        )
    n_distilled = held_tokens(distilled.model, held)
    curve = []
    for point in tqdm(
        sorted({p for p in points if 0 < p < len(rules)} | {len(rules)}), desc="curve", unit="point"
    ):
        if point == len(rules):
            n = held.remapped
        else:
            tok = Tokenizer.from_str(json.dumps(with_rules(data, rules[:point], new_score[:point])))
            n = held_tokens(tok.model, held)
        curve.append(
            {
                "reassigned_ids": point,
                "tokens": n,
                "tokens_per_byte": round(n / held.bytes, 5),
                "saving_vs_gpt2": round(1 - n / held.gpt2, 5),
                "saving_vs_distilled": round(1 - n / n_distilled, 5),
            }
        )
    return n_distilled, curve


def heldout_facts(held, n_distilled):
    """The held-out split's tokens and tokens per byte under GPT-2, the distilled and the remapped tokenizer."""
    n_gpt2, n_remapped, n_bytes = held.gpt2, held.remapped, held.bytes
    return {
        "documents": held.docs,
        "bytes": n_bytes,
        "tokens": {"gpt2_bpe": n_gpt2, "distilled": n_distilled, "remapped": n_remapped},
        "tokens_per_byte": {
            "gpt2_bpe": round(n_gpt2 / n_bytes, 5),
            "distilled": round(n_distilled / n_bytes, 5),
            "remapped": round(n_remapped / n_bytes, 5),
        },
        "saving_vs_gpt2": round(1 - n_remapped / n_gpt2, 5),
        "saving_vs_distilled": round(1 - n_remapped / n_distilled, 5),
    }


def checks_facts(rules, held, fuzz, unchanged, missing):
    """What 06 checked: the round trip, unchanged text, every new token emitted, AutoTokenizer."""
    return {
        "roundtrip": {
            "texts": held.docs + len(fuzz),
            "heldout_documents": held.docs,
            "fuzz_texts": len(fuzz),
            "failures": 0,
        },
        "unchanged": unchanged,
        "emitted_on_heldout": {
            "new_tokens": len(rules),
            "emitted": len(rules) - len(missing),
            "not_emitted": missing,
        },
        "autotokenizer": "loads; same ids as tokenizer.json",
    }


def tokenizer_facts(art):
    out = art.remapped_tokenizer / "tokenizer.json"
    return {
        "path": str(out),
        "sha256": sha256_file(out),
        "vocab_size": VOCAB_SIZE,
        "distilled_sha256": sha256_file(art.distilled_tokenizer / "tokenizer.json"),
    }


def js_parity(tmp, cfg, held, fuzz):
    """The same ids in tokenizers.js as in Python (lib/parity.py) on held-out windows, the fuzz texts and
    the tricky texts; a difference stops the step unless js_parity: warn."""
    if not cfg["js_parity_max_bytes"]:
        return {"checked": False, "why": "js_parity_max_bytes is 0"}
    texts = {
        "held-out": budget(held.sample, cfg["js_parity_max_bytes"]),
        "fuzz": budget(fuzz, cfg["js_parity_max_bytes"]),
        "tricky": tricky_texts(),
    }
    return check_parity(tmp, texts, cfg["js_parity"], "configs/remap.yaml")


# -----------------------------------------------------------------------------


def settings(args):
    art = Artifacts(args.artifacts)
    cfg = step_config("remap", args)
    select_cfg = load_config("select", args.profile, args.configs)
    setup_logging(STEP, art.log_file(STEP))
    return art, cfg, select_cfg


@dataclass
class Inputs:
    """The distilled Unigram (tokenizer, tokenizer.json data, pieces and scores by id), the rules checked
    against it, GPT-2's tokenizer, and the first held-out document (for the AutoTokenizer check)."""

    distilled: object
    data: dict
    pieces: list
    scores: list
    rules: list
    original: object
    first_doc: str


def read_inputs(art, select_cfg) -> Inputs:
    """The distilled Unigram (tokenizer, json, pieces, scores), the rules checked against it, GPT-2's tokenizer."""
    phase("reading the rules and the tokenizers")
    distilled, data, pieces, scores = read_unigram(
        require(art.distilled_tokenizer / "tokenizer.json", "distill").parent
    )
    protected = protected_ids(pieces, select_cfg["protect"], "configs/select.yaml")
    rules = load_rules(art.remap_rules, pieces, distilled, protected)
    if not rules:
        log.warning(
            f"warning: {art.remap_rules} has no rules: the remapped tokenizer is the distilled one"
        )
    original = load_gpt2_tokenizer(
        require(art.original_tokenizer / "tokenizer.json", "init").parent
    )
    heldout = require(art.heldout_docs, "corpus")
    first = next(iter_docs(heldout), "")
    return Inputs(distilled, data, pieces, scores, rules, original, first)


def main():
    args = parse_step_args("remap", __doc__)
    art, cfg, select_cfg = settings(args)
    t_start = time.perf_counter()

    # 1. the distilled tokenizer, the rules checked against it, and the new pieces' scores
    inputs = read_inputs(art, select_cfg)
    rules, distilled, original = inputs.rules, inputs.distilled, inputs.original
    bonus_config = select_cfg["new_piece_bonus"]
    new_score, bonus, max_abs = new_scores(inputs.pieces, rules, inputs.scores, bonus_config)
    remapped_data = with_rules(inputs.data, rules, new_score)

    # 2. the remapped tokenizer, which appears only once every check passed (temp dir + rename)
    with atomic_path(art.remapped_tokenizer) as tmp:
        phase("writing the remapped tokenizer")
        remapped = save_remapped(
            tmp, remapped_data, inputs.data, cfg, args.profile, art.distilled_tokenizer
        )
        check_autotokenizer(tmp, remapped, rules, inputs.first_doc[:2000])
        held = stream_heldout(art.heldout_docs, remapped, original, cfg)
        fuzz = fuzz_texts(cfg["fuzz_texts"], cfg["fuzz_seed"], rules, held.sample)
        check_round_trip(held, fuzz, remapped, distilled)
        unchanged, found = check_unchanged(distilled, remapped, rules, held, fuzz)
        parity = js_parity(tmp, cfg, held, fuzz)

    # 3. the saving curve on the held-out split, and the report
    points = cfg["curve_points"]
    n_distilled, curve = heldout_curve(
        inputs.data, rules, new_score, held, distilled, remapped, points
    )
    missing = not_emitted(rules, held, found)
    report = {
        "rules": len(rules),
        "tokenizer": tokenizer_facts(art),
        "scores": {
            "bonus_per_saved_token": bonus,
            "new_piece_bonus": bonus_config,
            "max_abs_old_score": max_abs,
        },
        "heldout": heldout_facts(held, n_distilled),
        "curve": curve,
        "checks": {**checks_facts(rules, held, fuzz, unchanged, missing), "js_parity": parity},
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    write_json(art.reports / "remap_report.json", report)
    log_summary(art, report, held, n_distilled)


def log_summary(art, report, held, n_distilled):
    n_bytes, curve, rules = held.bytes, report["curve"], report["rules"]
    emitted = report["checks"]["emitted_on_heldout"]["emitted"]
    log.info(
        f"held-out ({held.docs:,} documents, {n_bytes:,} bytes): tokens per byte GPT-2 {held.gpt2 / n_bytes:.4f}, "
        f"distilled {n_distilled / n_bytes:.4f}, remapped {held.remapped / n_bytes:.4f}: "
        f"{1 - held.remapped / held.gpt2:.1%} fewer tokens than GPT-2 with {rules:,} reassigned ids"
    )
    log.info(
        "curve: "
        + ", ".join(f"{c['reassigned_ids']:,} ids {c['saving_vs_gpt2']:.1%}" for c in curve)
    )
    log.info(f"new tokens emitted on held-out: {emitted:,} of {rules:,}")
    log.info(
        f"wrote {art.remapped_tokenizer} and {art.reports / 'remap_report.json'} ({report['seconds']:,} s)"
    )
    log.info("phases: " + phases.summary())


if __name__ == "__main__":
    main()
