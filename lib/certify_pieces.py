"""Certification: which pieces the distilled tokenizer still gets wrong no Unigram scores can fix.

Each wrong piece first goes through the exact repair's LP with nothing applied (lp_fixes): an infeasible
one hands over the strings of its LP's dual ray and their exact proof. Then the piece, those strings and up
to certify_neighbours examples sharing its tokens go into one LP over all scores (lib/certify.py: HiGHS,
cutting planes from Viterbi); an infeasible one is cut to a minimal set whose Farkas multipliers are
checked exactly: no scores reproduce BPE on those strings together (*certified*). Where that search finds
none, the dual ray's own proof stands: a conflict, or a forced tie (the labels hold only with two
segmentations scoring exactly the same, so rounding decides).

    >>> held, fixable = lp_fixes(state, todo, "exact LP of wrong train pieces")
    >>> certify_pieces(state, todo, token_strings, held, "certify wrong train pieces")["counts"]
    {'certified': 31, 'no conflict among neighbours': 9}
"""

import collections
import itertools
import time

from tqdm import tqdm

from lib.agreement import text_batches
from lib.certify import certify
from lib.exact_repair import least_fix
from lib.files import iter_docs, require
from lib.gpt2_bpe import bare
from lib.log import log
from lib.oodtext import corpus_file_hashes, ood_documents
from lib.unigram import lattice, viterbi

FORCED_TIE = "forced tie (certified)"


def lp_fixes(state, todo, desc):
    """least_fix of each piece of todo [(piece, lattice, BPE label, ...)], nothing applied, each within
    certify_case_seconds and all within certify_time_limit: ({piece: its {"strings", "proof"}} where the
    LP was infeasible, [the pieces it found a change for that breaks no example or guard string])."""
    cfg = state.cfg
    deadline = time.monotonic() + cfg["certify_time_limit"]
    held, fixable = {}, []
    for n, (name, lat, label, *_) in enumerate(tqdm(todo, desc=desc, unit="piece", leave=False)):
        if time.monotonic() > deadline:
            log.warning(
                f"{desc}: {len(todo) - n:,} left untried at certify_time_limit "
                f"({cfg['certify_time_limit']} s); the tokenizer does not depend on it: raise it in configs/certify.yaml"
            )
            break
        case_deadline = min(deadline, time.monotonic() + cfg["certify_case_seconds"])
        verdict, out = least_fix(state, (name, lat, label), None, case_deadline, apply=False)
        if verdict == "infeasible":
            held[name] = out
        fixable += [name] if verdict == "fixable" else []
        if state.guards:
            state.guards.pairs.clear()  # up to exact_repair_max_tokens ** 2 joined strings: memory stays one fix's
    return held, fixable


def certify_pieces(state, todo, token_strings, held, desc):
    """check_pieces of todo [(piece, lattice, BPE label, Viterbi path, its example index or None)] with the
    strings their LP held (held: lp_fixes'), then apply_proofs. Returns {"pieces": {piece: verdict},
    "counts", "conflicts", "ties", "seconds"}."""
    todo = [(*item[:5], held.get(item[0], {}).get("strings", [])[1:]) for item in todo]
    names = [p for p, _, _ in state.examples]
    result = check_pieces(todo, state.index, names, token_strings, state.cfg, desc)
    log.info(f"{desc}: {len(todo):,} checked: " + apply_proofs(result, held, token_strings))
    return result


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
            f"or certify_case_seconds; the tokenizer does not depend on it: raise them in configs/certify.yaml to check more"
        )
    return {
        "pieces": pieces,
        "counts": dict(counts),
        "conflicts": conflicts,
        "seconds": round(time.monotonic() - t0, 1),
        "summary": ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items()))
        + f"; {len(conflicts):,} conflicts",
    }


def unseen_wrong_pieces(art, cfg, distilled, bpe, scores):
    """The distinct pieces of held-out and out-of-domain text (the shipped pre-tokenizer's) that the distilled
    model segments unlike BPE, most frequent first, up to certify_unseen_max_pieces: [(piece, lattice,
    BPE label, Viterbi path, None)], and {piece: occurrences} of every wrong one. Streamed in batches; the texts are read again
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
            words, bare(bpe.original).encode_batch(words), bare(distilled).encode_batch(words)
        )
        if y.ids != g.ids
    ]
    wrong.sort(key=lambda x: (-x[0], x[1]))
    todo = []
    for _, w, y in wrong[: cfg["certify_unseen_max_pieces"]]:
        lat = lattice(w, bpe.vocab, bpe.max_len)
        todo.append((w, lat, y, viterbi(lat, scores), None))
    return todo, {w: n for n, w, _ in wrong}
