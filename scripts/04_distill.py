"""
04 distill: a Unigram tokenizer that reproduces GPT-2's byte-level BPE, learned from BPE's own output.

    .venv/bin/python scripts/04_distill.py [--max-rounds 10] [--no-run-split] [--decode-samples 100000]
    make artifacts/tokenizers/distilled_unigram/tokenizer.json        (alias: make distill)

Reads artifacts/analysis/reports/bpe_token_id_sequences.txt (the labels: GPT-2's ids of every train
document), artifacts/tokenizers/original/ (GPT-2's vocab and merges) and the held-out split.
Writes artifacts/tokenizers/distilled_unigram/ (tokenizer.json + HF files: same 50,257 ids and strings,
same byte-level pipeline, a Unigram model, no merges) and artifacts/analysis/reports/
distill_validation.{md,json} (agreement, mismatch classes, decode identity, throughput).

How:
  1. Scores start from merge trees: score(token) = sum over the merges in its tree of
     (5e4 / (rank + 1)) ** power; the 256 byte tokens score 0.
  2. Labelled examples: every train pre-token with GPT-2's segmentation of it (from the id sequences),
     plus every vocab string (BPE encodes each to itself).
  3. Greedy repair: for each example whose Viterbi output differs from BPE's, try raising one token of
     BPE's segmentation or lowering one token of the Viterbi output just enough; keep the change that
     fixes the most example occurrences net, checked on every example whose lattice holds that token.
  4. Ties no score can break (a run like '#####': BPE '####,#', Unigram's Viterbi '#,####') are cut the
     way BPE cuts them by a Split pre-tokenizer stage after ByteLevel. It fires only on a pre-token
     that is one run of a character (optionally after the space), or on '\\n\\n' in whitespace, and only
     where each cut is a BPE token boundary; built from BPE itself, checked on every run length.
"""

import argparse
import collections
import json
import resource
import re
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lib.config import load_config, save_config
from lib.files import atomic_path, iter_docs, require, write_json, write_text
from lib.ivr import piece_bytes
from lib.log import die, log, setup_logging
from lib.paths import DEFAULT_ARTIFACTS, Artifacts
from lib.tokenizer import EOT, EOT_ID, VOCAB_SIZE, byte_level_pipeline, load_gpt2_tokenizer, save_hf_tokenizer

STEP = "04_distill"
N_MERGES = 50000


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--power", type=float, help="exponent of the merge-tree init")
    p.add_argument("--max-rounds", type=int, help="rounds of greedy repair (0: the closed-form init only)")
    p.add_argument("--run-split", action=argparse.BooleanOptionalAction, default=None,
                   help="add the Split stage that cuts character runs the way BPE does")
    p.add_argument("--decode-samples", type=int, help="random id sequences for the decode identity check")
    p.add_argument("--artifacts", default=str(DEFAULT_ARTIFACTS), help="artifacts root (Make: ARTIFACTS=)")
    p.add_argument("--profile", default="default", help="config profile (Make: PROFILE=)")
    p.add_argument("--configs", default=None, help="configs directory (default: configs/)")
    return p.parse_args()


# -----------------------------------------------------------------------------
# GPT-2's vocabulary and merges, from the original tokenizer


def read_original(tokenizer_dir):
    """(BPE tokenizer, vocab {string: id} without EOT, merges [(a, b)] in rank order); dies unless it is GPT-2's."""
    tokenizer = load_gpt2_tokenizer(tokenizer_dir, expect_model="BPE")
    path = Path(tokenizer_dir) / "tokenizer.json"
    model = json.loads(path.read_text(encoding="utf-8"))["model"]
    vocab = {s: i for s, i in model.get("vocab", {}).items() if s != EOT}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    bytes_ = [s for s in vocab if len(s) == 1]
    if len(vocab) != VOCAB_SIZE - 1 or len(merges) != N_MERGES or len(bytes_) != 256:
        die(f"{path}: {len(vocab):,} tokens, {len(merges):,} merges, {len(bytes_)} byte tokens; "
            f"GPT-2 has {VOCAB_SIZE - 1:,}, {N_MERGES:,}, 256: point to GPT-2's tokenizer")
    for rank, m in enumerate(merges):
        if len(m) != 2 or m[0] not in vocab or m[1] not in vocab or m[0] + m[1] not in vocab:
            die(f"{path}: merge {rank:,} {m!r} does not build a vocab token; the file is corrupted")
    return tokenizer, vocab, merges


def merge_tree_scores(vocab, merges, power):
    """score(token) = sum over the merges of its tree of (5e4 / (rank + 1)) ** power; bytes score 0."""
    scores = [0.0] * VOCAB_SIZE
    for rank, (a, b) in enumerate(merges):
        scores[vocab[a + b]] = scores[vocab[a]] + scores[vocab[b]] + (5e4 / (rank + 1)) ** power
    return scores


# -----------------------------------------------------------------------------
# the run split: a pre-token that is one run of a character is cut where BPE cuts it


def esc(ch):
    return "\\x%02X" % ord(ch) if ch.isascii() and not ch.isalnum() else ch


def quant(lo, hi):
    return "{%d,}" % lo if hi is None else "{%d}" % lo if lo == hi else "{%d,%d}" % (lo, hi)


def run_chunks(bpe_model, vocab, max_len):
    """{(prefix, c): [(a, lo, hi)]}: on a piece prefix + c*n with lo <= n - a <= hi, BPE's first token is
    prefix + c*a and the rest is BPE's segmentation of the pure run c*(n - a). prefix is '' or 'Ġ'."""
    from tokenizers import Tokenizer
    table = {}
    m = Tokenizer(bpe_model)
    chars = sorted(s for s in vocab if len(s) == 1 and s not in "ĊĠ")
    for c in tqdm(chars, desc="run split", unit="char", leave=False):
        if not any(len(s) >= 2 and s == c * len(s) for s in vocab):
            continue
        lengths = range(1, max_len + 1)
        pure = {n: e.tokens for n, e in zip(lengths, m.encode_batch([c * n for n in lengths]))}
        for prefix in ("", "Ġ"):
            toks = pure if not prefix else {n: e.tokens for n, e in zip(lengths, m.encode_batch([prefix + c * n for n in lengths]))}
            rows = []
            for n in lengths:
                t = toks[n]
                a = len(t[0]) - len(prefix)
                if len(t) < 2 or t[0] != prefix + c * a or n - a < 1 or pure[n - a] != t[1:]:
                    continue
                if rows and rows[-1][0] == a and rows[-1][2] == n - a - 1:
                    rows[-1][2] = n - a
                else:
                    rows.append([a, n - a, n - a])
            for r in rows:
                if r[2] == max_len - r[0] and r[1] < r[2]:
                    r[2] = None  # the same first token up to max_len: taken to hold beyond
            if rows:
                table[(prefix, c)] = [tuple(r) for r in rows]
    return table


def run_split_pattern(table):
    """One regex, chained with \\G from the start of the piece: '\\n\\n' in whitespace, else run chunks."""
    groups = {"": [], "Ġ": []}
    for (prefix, c), rows in sorted(table.items()):
        alts = []
        for a, lo, hi in rows:
            eat = (esc(c) + quant(a - 1, a - 1) if a > 1 else "") if not prefix else (esc(c) + quant(a, a) if a else "")
            alts.append(eat + "(?=" + esc(c) + quant(lo, hi) + "\\z)")
        head = "" if prefix else esc(c)
        groups[prefix].append(head + ("(?:" + "|".join(alts) + ")" if len(alts) > 1 else alts[0]))
    runs = "|".join((["Ġ(?:" + "|".join(groups["Ġ"]) + ")"] if groups["Ġ"] else []) + groups[""])
    return "\\G(?:[ĠĉčċČ]*ĊĊ|(?=Ġ?(.)\\1)(?:" + runs + "))"


# -----------------------------------------------------------------------------
# tokenizers: the distilled one, and bare ones that segment byte-level pre-tokens


def build_unigram(vocab, scores, pattern):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    pieces = [None] * VOCAB_SIZE
    for s, i in vocab.items():
        pieces[i] = (s, float(scores[i]))
    pieces[EOT_ID] = (EOT, 0.0)
    tokenizer = byte_level_pipeline(Tokenizer(models.Unigram(pieces, unk_id=None, byte_fallback=False)))
    if pattern:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            tokenizer.pre_tokenizer, pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)])
    return tokenizer


def bare(tokenizer, pattern=None):
    """The model alone (plus the run split): encodes byte-level pre-tokens as they are."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers

    t = Tokenizer.from_str(tokenizer.to_str())
    t.normalizer = None
    t.post_processor = None
    t.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False) if pattern else None
    return t


def pre_tokenizer_gpt2():
    from tokenizers import pre_tokenizers
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


# -----------------------------------------------------------------------------
# labelled examples


def read_sequences(path, id_bytes):
    """Yield (line number, ids, text) for each document of bpe_token_id_sequences.txt; die on a bad line."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.strip():
        die(f"{path}: empty; re-run `make analyze`")
    lines = data.split(b"\n")
    if lines[-1] != b"":
        die(f"{path}:{len(lines):,}: last line has no newline (file truncated?); re-run `make analyze`")
    for line_no, line in enumerate(lines[:-1], 1):
        try:
            ids = [int(x) for x in line.split()]
        except ValueError:
            die(f"{path}:{line_no:,}: not a line of space-separated token ids; re-run `make analyze`")
        if not ids:
            die(f"{path}:{line_no:,}: empty line (no document has zero tokens); re-run `make analyze`")
        if min(ids) < 0 or max(ids) >= VOCAB_SIZE:
            die(f"{path}:{line_no:,}: id out of range 0..{VOCAB_SIZE - 1:,}; re-run `make analyze`")
        segments = []  # the parts between <|endoftext|> ids: BPE never sees across one
        for part in " ".join(map(str, ids)).split(str(EOT_ID)):
            seg = [int(x) for x in part.split()]
            try:
                segments.append((seg, b"".join(id_bytes[i] for i in seg).decode("utf-8")))
            except UnicodeDecodeError:
                die(f"{path}:{line_no:,}: ids do not decode to UTF-8 text (truncated line?); re-run `make analyze`")
        text = EOT.join(t for _, t in segments)
        yield line_no, ids, text, segments


def pretoken_labels(docs, token_strings, pre_tokenizer, path):
    """Counter {(byte-level pre-token, BPE ids)} over documents given as (line, ids, text)."""
    counts = collections.Counter()
    for line_no, _, _, segments in docs:
        for ids, text in segments:
            count_segment(counts, line_no, ids, text, token_strings, pre_tokenizer, path)
    return counts


def count_segment(counts, line_no, ids, text, token_strings, pre_tokenizer, path):
    words = [w for w, _ in pre_tokenizer.pre_tokenize_str(text)]
    j = 0
    for w in words:
        start, got = j, ""
        while len(got) < len(w) and j < len(ids):
            got += token_strings[ids[j]]
            j += 1
        if got != w:
            die(f"{path}:{line_no:,}: ids do not follow GPT-2's pre-tokenization (not GPT-2 BPE output?)")
        counts[(w, tuple(ids[start:j]))] += 1
    if j != len(ids):
        die(f"{path}:{line_no:,}: ids do not follow GPT-2's pre-tokenization (not GPT-2 BPE output?)")


def split_examples(labelled, splitter, token_strings):
    """Cut each labelled pre-token with the run split: ({(piece, ids): count}, cut-inside-a-token count)."""
    examples = collections.Counter()
    bad = 0
    for (w, ids), n in labelled.items():
        pieces = [p for p, _ in splitter.pre_tokenize_str(w)] if splitter else [w]
        j, ok, out = 0, True, []
        for p in pieces:
            start, got = j, ""
            while len(got) < len(p) and j < len(ids):
                got += token_strings[ids[j]]
                j += 1
            if got != p:
                ok = False
                break
            out.append((p, ids[start:j]))
        if not ok:
            bad += n
            continue
        for p, pids in out:
            examples[(p, tuple(pids))] += n
    return examples, bad


# -----------------------------------------------------------------------------
# Viterbi exactly as tokenizers' Unigram does it (earliest start wins a tie: the longest last piece)


def lattice(word, vocab, max_len):
    return [[(e, vocab[word[s:e]]) for e in range(s + 1, min(len(word), s + max_len) + 1) if word[s:e] in vocab]
            for s in range(len(word))]


def viterbi(lat, scores):
    n = len(lat)
    best = [0.0] + [None] * n
    back = [None] * (n + 1)
    for s in range(n):
        b = best[s]
        for e, i in lat[s]:
            c = scores[i] + b
            if best[e] is None or c > best[e]:
                best[e] = c
                back[e] = (s, i)
    out, e = [], n
    while e > 0:
        s, i = back[e]
        out.append(i)
        e = s
    return out[::-1]


def path_score(ids, scores):
    total = 0.0
    for i in ids:
        total = scores[i] + total
    return total


def as_loaded(scores, vocab):
    """The scores as tokenizers holds them after reading tokenizer.json: its JSON float parser can be
    one ulp off, which flips exact ties. Written and read back until stable."""
    from tokenizers import Tokenizer, models

    pieces = sorted(((s, i) for s, i in vocab.items()), key=lambda x: x[1])
    for _ in range(5):
        text = Tokenizer(models.Unigram([(s, float(scores[i])) for s, i in pieces], unk_id=None, byte_fallback=False)).to_str()
        loaded = [x for _, x in json.loads(Tokenizer.from_str(text).to_str())["model"]["vocab"]]
        new = list(scores)
        for (_, i), x in zip(pieces, loaded):
            new[i] = x
        if new == scores:
            break
        scores = new
    return scores


def learn(examples, vocab, merges, scores, max_rounds, margin_rel, max_tree=64):
    """Greedy repair of the scores on the examples [(piece, ids, weight)]; returns (scores, history).

    A candidate change moves one token's score; a raise may also move every token built on it by the
    same amount (as if its merge weighed more), which keeps ties that float64 cannot resolve in order."""
    up = collections.defaultdict(list)  # token id -> tokens merged directly from it
    for a, b in merges:
        up[vocab[a]].append(vocab[a + b])
        up[vocab[b]].append(vocab[a + b])

    def built_on(i):
        seen, todo = {i}, [i]
        while todo and len(seen) <= max_tree:
            for j in up[todo.pop()]:
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return sorted(seen) if len(seen) <= max_tree else None

    max_len = max(map(len, vocab))
    lats = [lattice(p, vocab, max_len) for p, _, _ in tqdm(examples, desc="lattices", unit="ex", leave=False)]
    labels = [y for _, y, _ in examples]
    weights = [w for _, _, w in examples]
    holders = collections.defaultdict(list)  # token id -> examples whose lattice holds it
    for k, lat in enumerate(lats):
        for i in {i for row in lat for _, i in row}:
            holders[i].append(k)

    def ok(k):  # right, or a permutation of BPE's (a tie no score can break)
        y = viterbi(lats[k], scores)
        return tuple(y) == labels[k] or sorted(y) == sorted(labels[k])

    scores[:] = as_loaded(scores, vocab)
    state = [ok(k) for k in range(len(examples))]
    history = [sum(w for w, s in zip(weights, state) if not s)]
    for rnd in range(max_rounds):
        wrong = sorted((k for k in range(len(examples)) if not state[k]), key=lambda k: (-weights[k], examples[k][0]))
        applied = 0
        for k in tqdm(wrong, desc=f"repair round {rnd + 1}", unit="ex", leave=False):
            if state[k]:
                continue
            y, y_hat = labels[k], viterbi(lats[k], scores)
            diff = collections.Counter(y)
            diff.subtract(y_hat)
            s_y, s_hat = path_score(y, scores), path_score(y_hat, scores)
            # the margin must outgrow float64 rounding of every score it touches
            need = s_hat - s_y + margin_rel * max(abs(s_y), abs(s_hat), *(abs(scores[i]) for i in diff), 1.0)
            candidates = [[i] for i, v in sorted(diff.items()) if v]
            candidates += [t for i, v in sorted(diff.items()) if v > 0 and (t := built_on(i)) and len(t) > 1]
            best = None
            for group in candidates:
                delta = need / diff[group[0]]  # > 0 raises a BPE token, < 0 lowers a Viterbi one
                old = {i: scores[i] for i in group}
                for i in group:
                    scores[i] = old[i] + delta
                new = {h: ok(h) for i in group for h in holders[i]}
                gain = sum(weights[h] * (new[h] - state[h]) for h in new)
                for i in group:
                    scores[i] = old[i]
                if best is None or gain > best[0]:
                    best = (gain, group, delta, new)
            if best and best[0] > 0:
                for i in best[1]:
                    scores[i] += best[2]
                for h, s in best[3].items():
                    state[h] = s
                applied += 1
        scores[:] = as_loaded(scores, vocab)
        state = [ok(k) for k in range(len(examples))]
        history.append(sum(w for w, s in zip(weights, state) if not s))
        log.info(f"repair round {rnd + 1}: {applied:,} changes, wrong example weight {history[-1]:,}")
        if not applied:
            break
    return scores, history


# -----------------------------------------------------------------------------
# validation


def classify(word, bpe, got, token_strings):
    if sorted(bpe) == sorted(got):
        return "permutation tie (char run)"
    # the first and last character offsets where the two segmentations differ
    cuts_b = set(np.cumsum([len(token_strings[i]) for i in bpe]))
    cuts_g = set(np.cumsum([len(token_strings[i]) for i in got]))
    diff = sorted(cuts_b ^ cuts_g)
    lo, hi = max(0, diff[0] - 2), diff[-1] + 2
    if re.search(r"(.)\1", word[lo:hi]):
        return "run in context (BPE pairs the run first)"
    return "score order (left by the greedy repair)"


def agreement(labelled, distilled_bare, token_strings, n_examples):
    """Per pre-token occurrence / distinct pre-token agreement, and the mismatches grouped by class."""
    items = sorted(labelled.items())
    words = [w for (w, _), _ in items]
    got = [tuple(e.ids) for e in distilled_bare.encode_batch(words)] if words else []
    occ = sum(n for _, n in items)
    ok_occ = ok_distinct = 0
    classes = collections.defaultdict(lambda: {"occurrences": 0, "distinct": 0, "examples": []})
    for ((w, bpe), n), g in zip(items, got):
        if g == bpe:
            ok_occ += n
            ok_distinct += 1
            continue
        c = classes[classify(w, bpe, g, token_strings)]
        c["occurrences"] += n
        c["distinct"] += 1
        c["examples"].append((n, w, [token_strings[i] for i in bpe], [token_strings[i] for i in g]))
    for c in classes.values():
        c["examples"] = [{"count": n, "pretoken": w, "bpe": b, "distilled": g}
                         for n, w, b, g in sorted(c["examples"], key=lambda x: (-x[0], x[1]))[:n_examples]]
    return {
        "pretoken_occurrences": occ, "pretoken_occurrence_agreement": ok_occ / max(occ, 1),
        "distinct_pretokens": len(items), "distinct_pretoken_agreement": ok_distinct / max(len(items), 1),
        "mismatches": dict(sorted(classes.items())),
    }


def doc_agreement(texts, reference_ids, distilled):
    got = distilled.encode_batch(texts, add_special_tokens=False) if texts else []
    same = sum(list(ref) == e.ids for ref, e in zip(reference_ids, got))
    return {"documents": len(texts), "document_agreement": same / max(len(texts), 1),
            "ids_compared": sum(map(len, reference_ids))}


def decode_identity(original, distilled, n, max_len, seed):
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(0, VOCAB_SIZE, size=int(k)).tolist() for k in rng.integers(1, max_len + 1, size=n)]
    seqs[: min(n, 1000)] = [s + [EOT_ID] + s[:1] for s in seqs[: min(n, 1000)]]  # the special token inside too
    bad = 0
    for skip in (False, True):
        a = original.decode_batch(seqs, skip_special_tokens=skip)
        b = distilled.decode_batch(seqs, skip_special_tokens=skip)
        bad += sum(x != y for x, y in zip(a, b))
    return {"sequences": n, "max_len": max_len, "seed": seed, "mismatches": bad}


def throughput(original, distilled, texts, repeats):
    """Encode the same texts with both, alternating; the best of `repeats` runs of each."""
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    best = {"gpt2_bpe": 0.0, "distilled": 0.0}
    for _ in range(repeats):
        for name, tok in (("gpt2_bpe", original), ("distilled", distilled)):
            t0 = time.perf_counter()
            tok.encode_batch(texts, add_special_tokens=False)
            best[name] = max(best[name], n_bytes / 1e6 / (time.perf_counter() - t0))
    return {"bytes": n_bytes, "repeats": repeats, "gpt2_bpe_mb_per_s": round(best["gpt2_bpe"], 3),
            "distilled_mb_per_s": round(best["distilled"], 3), "ratio": round(best["distilled"] / best["gpt2_bpe"], 3)}


def report_md(r):
    pct = lambda x: f"{100 * x:.4f}%"
    lines = ["# 04 distill: validation of the distilled Unigram tokenizer", "",
             f"Run split stage: {'on' if r['run_split'] else 'off'}. Learned on {r['examples']['pieces']:,} distinct "
             f"train pieces ({r['examples']['piece_occurrences']:,} occurrences) and {r['examples']['vocab_strings']:,} "
             f"vocab strings in {r['seconds_learning']:.1f} s; wrong example weight by round: "
             f"{', '.join(f'{h:,}' for h in r['repair_history'])}.", "",
             "## Agreement with GPT-2's BPE", "",
             "| split | pre-token occurrences | agreement | distinct pre-tokens | agreement | documents | exact | ids compared |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for split in ("train", "heldout"):
        a = r[split]
        lines.append(f"| {split} | {a['pretoken_occurrences']:,} | {pct(a['pretoken_occurrence_agreement'])} | "
                     f"{a['distinct_pretokens']:,} | {pct(a['distinct_pretoken_agreement'])} | {a['documents']:,} | "
                     f"{pct(a['document_agreement'])} | {a['ids_compared']:,} |")
    for split in ("train", "heldout"):
        lines += ["", f"## Mismatches on {split}, by class", ""]
        if not r[split]["mismatches"]:
            lines.append("None.")
        for cls, c in r[split]["mismatches"].items():
            lines += [f"### {cls}: {c['occurrences']:,} occurrences, {c['distinct']:,} distinct", "",
                      "| count | pre-token | GPT-2 BPE | distilled |", "|---:|---|---|---|"]
            for e in c["examples"]:
                show = lambda x: "`" + json.dumps(x, ensure_ascii=False).replace("|", "\\|") + "`"
                lines.append(f"| {e['count']:,} | {show(e['pretoken'])} | {show(e['bpe'])} | {show(e['distilled'])} |")
            lines.append("")
    d, t = r["decode_identity"], r["throughput"]
    lines += ["", "## Decode identity", "",
              f"{d['sequences']:,} random id sequences (1-{d['max_len']} ids, seed {d['seed']}, some with {EOT}), decoded "
              f"with and without skip_special_tokens: **{d['mismatches']:,} mismatches**.", "",
              "## Encode throughput (same texts, alternating, best run of each)", "",
              f"GPT-2 BPE {t['gpt2_bpe_mb_per_s']} MB/s, distilled {t['distilled_mb_per_s']} MB/s: "
              f"ratio **{t['ratio']}** on {t['bytes']:,} bytes.", "",
              f"Split cuts inside a BPE token: {r['split_conflicts']:,} (must be 0). "
              f"Loads with transformers.AutoTokenizer: {r['loads_with_autotokenizer']}.", ""]
    return "\n".join(lines)


def main():
    args = parse_args()
    art = Artifacts(args.artifacts)
    cfg = load_config("distill", args.profile, args.configs, {
        "power": args.power, "max_rounds": args.max_rounds, "run_split": args.run_split,
        "decode_samples": args.decode_samples})
    setup_logging(STEP, art.log_file(STEP))
    t_start = time.perf_counter()
    seq_path = require(art.bpe_sequences, "analyze")
    heldout_path = require(art.heldout_docs, "corpus")
    original, vocab, merges = read_original(art.original_tokenizer)
    token_strings = [None] * VOCAB_SIZE
    for s, i in vocab.items():
        token_strings[i] = s
    token_strings[EOT_ID] = EOT
    id_bytes = [None] * VOCAB_SIZE
    for s, i in vocab.items():
        id_bytes[i] = piece_bytes(s)
    id_bytes[EOT_ID] = EOT.encode()

    # --- the run split and the labelled examples
    pattern = run_split_pattern(run_chunks(original.model, vocab, cfg["run_split_max_len"])) if cfg["run_split"] else None
    from tokenizers import Regex, pre_tokenizers
    splitter = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False) if pattern else None
    log.info(f"run split: {'on, ' + format(len(pattern), ',') + ' regex chars' if pattern else 'off'}")
    docs = list(read_sequences(seq_path, id_bytes))
    train_labelled = pretoken_labels(docs, token_strings, pre_tokenizer_gpt2(), seq_path)
    pieces, split_conflicts = split_examples(train_labelled, splitter, token_strings)
    vocab_pieces, vocab_conflicts = split_examples({(s, (i,)): 1 for s, i in vocab.items()}, splitter, token_strings)
    split_conflicts += vocab_conflicts
    if split_conflicts:
        log.warning(f"the run split cut inside a BPE token {split_conflicts:,} times")
    examples = collections.Counter(pieces)
    for key, n in vocab_pieces.items():
        examples[key] += n * cfg["vocab_weight"]
    examples = [(p, y, n) for (p, y), n in sorted(examples.items())]
    log.info(f"{len(docs):,} train documents -> {sum(train_labelled.values()):,} pre-tokens "
             f"({len(train_labelled):,} distinct) -> {len(pieces):,} distinct pieces, + {len(vocab_pieces):,} vocab strings")

    # --- learn the scores
    t0 = time.perf_counter()
    scores = merge_tree_scores(vocab, merges, cfg["power"])
    scores, history = learn(examples, vocab, merges, scores, cfg["max_rounds"], cfg["margin_rel"])
    seconds_learning = time.perf_counter() - t0
    distilled = build_unigram(vocab, scores, pattern)

    # --- validate: agreement on train and held-out, decode identity, throughput
    distilled_bare = bare(distilled, pattern)
    heldout_texts = list(iter_docs(heldout_path))
    heldout_labelled = collections.Counter()
    gpt2_pt = pre_tokenizer_gpt2()
    for text in heldout_texts:
        heldout_labelled.update(w for w, _ in gpt2_pt.pre_tokenize_str(text))
    words = sorted(heldout_labelled)
    bpe_ids = [tuple(e.ids) for e in bare(original).encode_batch(words)] if words else []
    heldout_labelled = collections.Counter({(w, y): heldout_labelled[w] for w, y in zip(words, bpe_ids)})
    report = {"run_split": bool(pattern), "split_conflicts": split_conflicts, "repair_history": history,
              "seconds_learning": round(seconds_learning, 1),
              "examples": {"pieces": len(pieces), "piece_occurrences": sum(pieces.values()), "vocab_strings": len(vocab_pieces)}}
    n_ex = cfg["report_examples"]
    report["train"] = agreement(train_labelled, distilled_bare, token_strings, n_ex)
    report["train"].update(doc_agreement([d[2] for d in docs], [d[1] for d in docs], distilled))
    heldout_ref = [e.ids for e in original.encode_batch(heldout_texts, add_special_tokens=False)] if heldout_texts else []
    report["heldout"] = agreement(heldout_labelled, distilled_bare, token_strings, n_ex)
    report["heldout"].update(doc_agreement(heldout_texts, heldout_ref, distilled))
    report["decode_identity"] = decode_identity(original, distilled, cfg["decode_samples"], cfg["decode_max_len"], cfg["seed"])
    bench, size = [], 0
    for text in heldout_texts + [d[2] for d in docs]:
        if size >= cfg["throughput_bytes"]:
            break
        bench.append(text)
        size += len(text.encode("utf-8"))
    report["throughput"] = throughput(original, distilled, bench, cfg["throughput_repeats"])

    # --- write the tokenizer (temp dir + rename) and check that it loads back
    with atomic_path(art.distilled_tokenizer) as tmp:
        save_hf_tokenizer(distilled, tmp)
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(str(tmp))
        probe = "def f(x):\n    return x  # ====\n\n\n<|endoftext|> 안녕 😀"
        report["loads_with_autotokenizer"] = hf(probe)["input_ids"] == original.encode(probe).ids
        save_config(cfg, tmp / f"{STEP}.config.yaml", STEP, args.profile)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    write_json(art.reports / "distill_validation.json", report)
    write_text(art.reports / "distill_validation.md", report_md(report))
    for split in ("train", "heldout"):
        a = report[split]
        log.info(f"{split}: {100 * a['pretoken_occurrence_agreement']:.4f}% of {a['pretoken_occurrences']:,} pre-token "
                 f"occurrences, {100 * a['distinct_pretoken_agreement']:.4f}% of {a['distinct_pretokens']:,} distinct, "
                 f"{100 * a['document_agreement']:.2f}% of {a['documents']:,} documents exact")
    log.info(f"decode identity: {report['decode_identity']['mismatches']:,} mismatches; throughput ratio "
             f"{report['throughput']['ratio']}; {report['seconds']} s, peak RSS {report['peak_rss_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
