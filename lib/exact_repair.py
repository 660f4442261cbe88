"""Exact repair: one LP per train piece the greedy left wrong (lib/certify.least_change, HiGHS).

The greedy moves one token, or one token with its extensions, at a time; '(-(-' needs four moved at once.
For each wrong train piece, heaviest first, a linear program asks for the score changes of least weighted
|change| that make BPE's segmentation beat every path Viterbi finds by the margin. Every example and
pair-guard string the change would turn wrong then joins the LP with its row (cutting planes over strings
as well as paths), until the change breaks none: it is kept. An infeasible LP's dual ray names the few rows
(of thousands) that cannot hold together: they are checked exactly (lib/certify.prove), and handed to the
certification (lib/certify_pieces.py). A wide change can keep every example right and still break strings
that no example holds, most often where two of its moved tokens meet ('200' + '430'): so those joined pairs
are guard strings too (PairGuards.joined).

    >>> result = exact_repair(state, in_train)          # state: lib.greedy_repair.RepairState
    >>> result["counts"]
    {'fixed': 120, 'infeasible': 41, 'too wide': 3}
"""

import collections
import time

from tqdm import tqdm

from lib.certify import least_change, prove
from lib.certify import row as label_row
from lib.greedy_repair import settle
from lib.log import log
from lib.unigram import is_right, path_score, viterbi


def wrong_train_pieces(state, in_train):
    """The example indices of the train pieces Viterbi gets wrong, heaviest first."""
    return sorted(
        (k for k, r in enumerate(state.index.right) if not r and in_train[k]),
        key=lambda k: (-state.examples[k][2], state.examples[k][0]),
    )


def exact_repair(state, in_train):
    """least_fix for each wrong train piece (heaviest first, up to exact_repair_max_pieces, within
    exact_repair_time_limit). Returns {"pieces": {piece: verdict}, "counts", "seconds", "held": {piece whose
    LP was infeasible: least_fix's {"strings": [(name, lattice, label)], "proof"}}}."""
    index, examples, cfg, guards = state.index, state.examples, state.cfg, state.guards
    wrong = wrong_train_pieces(state, in_train)
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
            pieces[name], strings = least_fix(state, string, ("example", k), deadline)
            if pieces[name].startswith("LP") and time.monotonic() > deadline:
                pieces[name] = (
                    "time limit"  # its LP was cut off by the phase's limit: counted with the untried
                )
            if strings:
                held[name] = strings
            if guards:
                guards.pairs.clear()  # up to exact_repair_max_tokens ** 2 joined strings: memory stays one fix's
    settle(index, state.scores, progress="exact repair: Viterbi of the examples touched")
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


def least_fix(state, string, key, deadline, apply=True):
    """Fix string (name, lattice, BPE label; key: ('example', k) when it is example k, else None) by
    least_change over the strings held (it first), adding each string the change turns wrong and each path
    that beats a held label (broken_by), until nothing breaks. Returns ('fixed', None) with the change
    applied (apply False: 'fixable', the scores unchanged); ('infeasible', {"strings": those whose rows make
    up the LP's dual ray, it first (a handful of those held, for certify), "proof": lib/certify.prove of
    those rows as a conflict record (prove_record), or None}); or why it gave up ('too wide', 'too many
    strings', 'LP <status>', 'unsettled (float tie)'), the scores unchanged. state: RepairState."""
    index, scores, cfg = state.index, state.scores, state.cfg
    held, keys = [string], {key} - {None}
    path = tuple(viterbi(string[1], scores))
    rows, seen = [score_row(string[2], path, scores, cfg["margin_rel"])], {(string[0], path)}
    owner, against = [0], [path]  # rows[r] is held[owner[r]]'s label against the path against[r]
    while True:
        if len(held) > cfg["exact_repair_max_strings"]:
            return "too many strings", None
        status, delta = least_change(rows, state.cost, deadline - time.monotonic())
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
        beaten = broken_by(state, delta, held, keys)
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


def broken_by(state, delta, held, keys):
    """What moving each token t by delta[t] breaks: [((name, lattice, label), the path that now beats the
    label, new)]: a held string still beaten (new False), or an example or a guard string (PairGuards: of a
    moved token, or two moved tokens joined) that was right and turns wrong (new True; its key joins
    keys). The scores are restored."""
    index, scores, guards, examples = state.index, state.scores, state.guards, state.examples
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
