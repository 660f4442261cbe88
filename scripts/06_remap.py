"""
06 remap: the IVR tokenizer -- the distilled Unigram with each reassigned id's piece replaced.

    .venv/bin/python scripts/06_remap.py [--fuzz-texts 3000]
    make artifacts/tokenizers/remapped/tokenizer.json        (alias: make remap)

Reads remap_rules.yaml (05; protect and new_piece_bonus of configs/select.yaml), the distilled Unigram (04), the
held-out split and GPT-2's own tokenizer (01, for the comparison). Writes
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
tokenizer encodes it; AutoTokenizer loads it. Reported: new tokens never emitted on held-out, and why.
"""

import argparse
import copy
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import load_config, save_config
from lib.files import atomic_path, iter_docs, require, sha256_file, write_json
from lib.ivr import load_rules, piece_text, pre_tokens, protected_ids, read_unigram
from lib.log import die, log, setup_logging
from lib.paths import DEFAULT_ARTIFACTS, Artifacts
from lib.tokenizer import EOT, EOT_ID, VOCAB_SIZE, load_gpt2_tokenizer, save_hf_tokenizer

STEP = "06_remap"
FREE = "\u2400"  # not in the byte-level alphabet: a piece made with it can never match a pre-token


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fuzz-texts", type=int, help="how many fuzz texts to round-trip")
    p.add_argument("--artifacts", default=str(DEFAULT_ARTIFACTS), help="artifacts root (Make: ARTIFACTS=)")
    p.add_argument("--profile", default="default", help="config profile (Make: PROFILE=)")
    p.add_argument("--configs", default=None, help="configs directory (default: configs/)")
    return p.parse_args()


# -----------------------------------------------------------------------------
# the remapped tokenizer.json


def with_rules(data, rules, scores):
    """A copy of a Unigram tokenizer.json (as a dict) whose rule ids carry the new pieces and scores."""
    out = copy.deepcopy(data)
    vocab = out["model"]["vocab"]
    for rule, score in zip(rules, scores):
        vocab[rule["id"]] = [rule["new"], score]
    return out


def new_scores(data, rules, old_scores, new_piece_bonus):
    """V(c) + B (k(c) - 1) for each rule's new string c; B; and the largest |old score|."""
    from tokenizers import Tokenizer

    reduced = copy.deepcopy(data)
    for rule in rules:  # the ids given away are gone: pieces that can never match anything
        reduced["model"]["vocab"][rule["id"]] = [f"{FREE}{rule['id']}", 0.0]
    reduced = Tokenizer.from_str(json.dumps(reduced))
    max_abs = max(abs(s) for i, s in enumerate(old_scores) if i != EOT_ID) or 1.0
    bonus = new_piece_bonus * max_abs
    out = []
    for rule in rules:
        ids = [t.id for t in reduced.model.tokenize(rule["new"])]
        out.append(sum(old_scores[i] for i in ids) + bonus * (len(ids) - 1))
    return out, bonus, max_abs


# -----------------------------------------------------------------------------
# fuzz texts


def fuzz_texts(n, seed, rules, heldout):
    """Seeded fuzz: random unicode, raw bytes, whitespace runs, old and new strings in context, held-out slices."""
    rng = random.Random(seed)
    planes = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
              (0x300, 0x36F), (0x2000, 0x206F), (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
              (0xE000, 0xF8FF), (0x1F300, 0x1FAFF), (0x10000, 0x1FFFF), (0xF0000, 0x10FFFF), (0x0, 0x1F)]
    spaces = [" ", "\n", "\t", "\r", "\x0b", "\x0c", "\u00a0", "\u3000", "\u2028", "\r\n"]
    olds = [piece_text(r["old"]) for r in rules] or ["hello"]
    news = [r["text"] for r in rules] or ["  "]
    words = ["def", " return", "x", "self", "(", ")", ":", "'", '"', "#", "é", "日本", "🙂", "0", "__init__", "\\"]
    out = ["", " ", "\n", EOT, f"a{EOT}b", "\n" + " " * 200 + "x", " " * 1000, "\t" * 50 + "\n" * 50]
    kinds = ["unicode", "bytes_latin1", "bytes_utf8_replace", "whitespace", "old", "new", "mixed", "slice"]
    while len(out) < n:
        kind = kinds[len(out) % len(kinds)]
        if kind == "unicode":
            text = "".join(chr(rng.randint(*rng.choice(planes))) for _ in range(rng.randint(1, 60)))
            text = "".join(ch for ch in text if not 0xD800 <= ord(ch) <= 0xDFFF)
        elif kind == "bytes_latin1":
            text = bytes(rng.randrange(256) for _ in range(rng.randint(1, 60))).decode("latin-1")
        elif kind == "bytes_utf8_replace":
            text = bytes(rng.randrange(256) for _ in range(rng.randint(1, 60))).decode("utf-8", errors="replace")
        elif kind == "whitespace":
            text = "".join(rng.choice(spaces) * rng.randint(1, 40) + rng.choice(["", *words]) for _ in range(rng.randint(1, 8)))
        elif kind == "old":
            text = "".join(rng.choice(["", " ", "\n", *words]) + rng.choice(olds) for _ in range(rng.randint(1, 4)))
        elif kind == "new":
            text = "".join(rng.choice(news) + rng.choice(["", " ", "x", "\n", *words]) for _ in range(rng.randint(1, 6)))
        elif kind == "mixed":
            parts = [rng.choice(olds), rng.choice(news), rng.choice(words), rng.choice(spaces) * rng.randint(1, 30)]
            rng.shuffle(parts)
            text = "".join(parts)
        else:
            doc = rng.choice(heldout) if heldout else "x"
            a = rng.randrange(max(len(doc), 1))
            text = doc[a:a + rng.randint(1, 400)]
        out.append(text)
    return out[:max(n, 0)]


def main():
    args = parse_args()
    art = Artifacts(args.artifacts)
    cfg = load_config("remap", args.profile, args.configs, {"fuzz_texts": args.fuzz_texts})
    select_cfg = load_config("select", args.profile, args.configs)
    setup_logging(STEP, art.log_file(STEP))
    if select_cfg["new_piece_bonus"] <= 0:
        die(f"configs/select.yaml: new_piece_bonus must be above 0, got {select_cfg['new_piece_bonus']}")
    t_start = time.perf_counter()
    distilled, data, pieces, scores = read_unigram(require(art.distilled_tokenizer / "tokenizer.json", "distill").parent)
    protected = protected_ids(pieces, select_cfg["protect"], "configs/select.yaml")
    rules = load_rules(art.remap_rules, pieces, distilled, protected)
    if not rules:
        log.warning(f"warning: {art.remap_rules} has no rules: the remapped tokenizer is the distilled one")
    given = {r["id"] for r in rules}
    heldout = list(iter_docs(require(art.heldout_docs, "corpus")))

    # --- the remapped tokenizer
    new_score, bonus, max_abs = new_scores(data, rules, scores, select_cfg["new_piece_bonus"])
    remapped_data = with_rules(data, rules, new_score)
    from tokenizers import Tokenizer
    out_dir = art.remapped_tokenizer
    with atomic_path(out_dir) as tmp:
        save_hf_tokenizer(Tokenizer.from_str(json.dumps(remapped_data)), tmp)
        save_config(cfg, tmp / f"{STEP}.config.yaml", STEP, args.profile)
        remapped = load_gpt2_tokenizer(tmp, expect_model="Unigram")
        written = json.loads((tmp / "tokenizer.json").read_text(encoding="utf-8"))
        want = [p for p, _ in remapped_data["model"]["vocab"]]
        if [p for p, _ in written["model"]["vocab"]] != want:
            die(f"{tmp / 'tokenizer.json'}: the saved pieces are not the remapped ones (a tokenizers bug?)")
        for key in ("normalizer", "pre_tokenizer", "decoder", "added_tokens"):
            if written.get(key) != data.get(key):
                die(f"{tmp / 'tokenizer.json'}: {key} changed on save; it must stay as in {art.distilled_tokenizer}")

        # --- AutoTokenizer loads it, with the same ids
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(str(tmp))
        sample = (heldout[0][:2000] if heldout else "") + "".join(r["text"] for r in rules[:20])
        if len(hf) != VOCAB_SIZE or hf(sample, add_special_tokens=False)["input_ids"] != remapped.encode(sample, add_special_tokens=False).ids:
            die(f"{tmp}: AutoTokenizer loads {len(hf):,} ids or encodes differently from tokenizer.json")
        for r in rules:
            if hf.convert_tokens_to_ids(r["new"]) != r["id"]:
                die(f"{tmp}: AutoTokenizer maps {r['text']!r} to {hf.convert_tokens_to_ids(r['new'])}, not {r['id']}")

        # --- round trip: the held-out split and fuzz texts
        fuzz = fuzz_texts(cfg["fuzz_texts"], cfg["fuzz_seed"], rules, heldout)
        texts = heldout + fuzz
        failures = []
        for text, enc in zip(texts, tqdm(remapped.encode_batch(texts, add_special_tokens=False), desc="round trip", unit="text")):
            if remapped.decode(enc.ids, skip_special_tokens=False) != text:
                failures.append(text)
        if failures:
            d_ok = distilled.decode(distilled.encode(failures[0], add_special_tokens=False).ids, skip_special_tokens=False) == failures[0]
            die(f"decode(encode(x)) != x for {len(failures):,} of {len(texts):,} texts, e.g. {failures[0][:80]!r} "
                f"(the distilled tokenizer {'round-trips it' if d_ok else 'fails on it too'})")
        log.info(f"round trip: decode(encode(x)) == x on all {len(texts):,} texts ({len(heldout):,} held-out, {len(fuzz):,} fuzz)")

        # --- unchanged: pre-tokens with no new string and no given-away id encode as before
        new_strings = {r["new"] for r in rules}
        new_lengths = sorted({len(s) for s in new_strings})

        def has_new(p):
            return any(p[a:a + n] in new_strings for n in new_lengths if n <= len(p) for a in range(len(p) - n + 1))

        pre_counts = Counter()
        for text in tqdm(texts, desc="pre-tokens", unit="text"):
            pre_counts.update(pre_tokens(distilled, text))
        unchanged = {"pre_token_occurrences": sum(pre_counts.values()), "distinct": len(pre_counts), "checked": 0,
                     "with_new_string": 0, "needing_given_away_id": 0, "changed": 0}
        contains = {}
        for p, f in pre_counts.items():
            contains[p] = has_new(p)
            before = [t.id for t in distilled.model.tokenize(p)]
            if contains[p]:
                unchanged["with_new_string"] += f
                continue
            if given.intersection(before):
                unchanged["needing_given_away_id"] += f
                continue
            unchanged["checked"] += f
            after = [t.id for t in remapped.model.tokenize(p)]
            if after != before:
                unchanged["changed"] += f
                die(f"pre-token {piece_text(p)!r} has no new string yet encodes as {after} instead of {before}")
        whole = [t for t in fuzz if not any(contains.get(p) for p in pre_tokens(distilled, t))]
        for t in whole:
            before = distilled.encode(t, add_special_tokens=False).ids
            if not given.intersection(before) and remapped.encode(t, add_special_tokens=False).ids != before:
                die(f"text {t[:80]!r} has no new string yet encodes differently from the distilled tokenizer")
        unchanged["whole_fuzz_texts_checked"] = len(whole)
        log.info(f"unchanged: {unchanged['checked']:,} pre-token occurrences without a new string encode exactly as "
                 f"before ({unchanged['with_new_string']:,} contain one, {unchanged['needing_given_away_id']:,} needed "
                 f"a given-away id); {len(whole):,} whole fuzz texts too")

    # --- held-out figures: GPT-2, distilled, remapped; emission of every new token; the curve
    n_bytes = sum(len(t.encode("utf-8")) for t in heldout)

    def count_tokens(tok):
        return sum(len(e.ids) for e in tok.encode_batch(heldout, add_special_tokens=False))

    original = load_gpt2_tokenizer(require(art.original_tokenizer / "tokenizer.json", "init").parent)
    n_gpt2, n_distilled = count_tokens(original), count_tokens(distilled)
    emitted = Counter()
    n_remapped = 0
    for enc in remapped.encode_batch(heldout, add_special_tokens=False):
        n_remapped += len(enc.ids)
        emitted.update(i for i in enc.ids if i in given)
    held_pre = Counter()
    for text in heldout:
        held_pre.update(pre_tokens(distilled, text))
    not_emitted = []
    for r in rules:
        if emitted[r["id"]]:
            continue
        occ = sum(f * p.count(r["new"]) for p, f in held_pre.items() if r["new"] in p)
        why = ("its string does not occur in the held-out split" if occ == 0 else
               f"its string occurs {occ:,} times, but never where it replaces its own old pieces "
               f"(inside an old token, across a better cut, or under a longer new piece)")
        not_emitted.append({"id": r["id"], "text": r["text"], "why": why})
    for item in not_emitted[:20]:
        log.info(f"  not emitted on held-out: id {item['id']} {item['text']!r}: {item['why']}")

    curve = []
    for point in sorted({p for p in cfg["curve_points"] if 0 < p < len(rules)} | {len(rules)}):
        tok = remapped if point == len(rules) else Tokenizer.from_str(json.dumps(with_rules(data, rules[:point], new_score[:point])))
        n = n_remapped if point == len(rules) else count_tokens(tok)
        curve.append({"reassigned_ids": point, "tokens": n, "tokens_per_byte": round(n / n_bytes, 5),
                      "saving_vs_gpt2": round(1 - n / n_gpt2, 5), "saving_vs_distilled": round(1 - n / n_distilled, 5)})

    report = {
        "rules": len(rules),
        "tokenizer": {"path": str(out_dir / "tokenizer.json"), "sha256": sha256_file(out_dir / "tokenizer.json"),
                      "vocab_size": VOCAB_SIZE, "distilled_sha256": sha256_file(art.distilled_tokenizer / "tokenizer.json")},
        "scores": {"bonus_per_saved_token": bonus, "new_piece_bonus": select_cfg["new_piece_bonus"],
                   "max_abs_old_score": max_abs},
        "heldout": {
            "documents": len(heldout), "bytes": n_bytes,
            "tokens": {"gpt2_bpe": n_gpt2, "distilled": n_distilled, "remapped": n_remapped},
            "tokens_per_byte": {"gpt2_bpe": round(n_gpt2 / n_bytes, 5), "distilled": round(n_distilled / n_bytes, 5),
                                "remapped": round(n_remapped / n_bytes, 5)},
            "saving_vs_gpt2": round(1 - n_remapped / n_gpt2, 5), "saving_vs_distilled": round(1 - n_remapped / n_distilled, 5),
        },
        "curve": curve,
        "checks": {
            "roundtrip": {"texts": len(texts), "heldout_documents": len(heldout), "fuzz_texts": len(fuzz), "failures": 0},
            "unchanged": unchanged,
            "emitted_on_heldout": {"new_tokens": len(rules), "emitted": len(rules) - len(not_emitted),
                                   "not_emitted": not_emitted},
            "autotokenizer": "loads; same ids as tokenizer.json",
        },
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    write_json(art.reports / "remap_report.json", report)
    log.info(f"held-out ({len(heldout):,} documents, {n_bytes:,} bytes): tokens per byte GPT-2 {n_gpt2 / n_bytes:.4f}, "
             f"distilled {n_distilled / n_bytes:.4f}, remapped {n_remapped / n_bytes:.4f}: "
             f"{1 - n_remapped / n_gpt2:.1%} fewer tokens than GPT-2 with {len(rules):,} reassigned ids")
    log.info("curve: " + ", ".join(f"{c['reassigned_ids']:,} ids {c['saving_vs_gpt2']:.1%}" for c in curve))
    log.info(f"new tokens emitted on held-out: {len(rules) - len(not_emitted):,} of {len(rules):,}")
    log.info(f"wrote {out_dir} and {art.reports / 'remap_report.json'} ({report['seconds']:,} s)")


if __name__ == "__main__":
    main()
