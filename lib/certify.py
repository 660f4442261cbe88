"""Which BPE segmentations no Unigram scores can reproduce together: a linear program (HiGHS) over the scores,
fed by Viterbi (cutting planes), and an exact certificate for each conflict it finds.

    >>> cases = [(w, lattice(w, vocab, max_len), bpe_ids(w)) for w in ("DLLLIBRARY", "STDLIB")]  # lib/unigram
    >>> result = certify(cases, token_len, time_limit=60)
    >>> result["status"], result["conflicts"][0]["cases"], result["conflicts"][0]["verified"]
    ('conflicts', ['DLLLIBRARY', 'STDLIB'], True)

Why it is exact. HF's Unigram emits, of all paths, the best-scoring one; of equal ones, the one whose last
piece starts earliest, then the same for the piece before (lib/unigram.forward keeps the first best met).
So the ids y are emitted for a string iff, for every other path p of its lattice, S(y) - S(p) >= 1 when p
wins a tie against y (the largest cut position where the two differ is a cut of y), and >= 0 otherwise
(scores scale freely, so 1 stands for any positive margin). The scores are free variables: nothing fixes
a byte token or the merge-tree init. Starting from the current wrong outputs, the LP is solved and Viterbi
under its solution adds every path that still beats a label, until no path does (the labels hold
together: no conflict among these cases) or the LP is infeasible. An infeasible LP is shrunk to a minimal
infeasible set of rows (deletion filter), and its Farkas multipliers are computed exactly in rationals:
lambda >= 0 with sum lambda (y - p) = 0 as token counts and sum lambda margin > 0. Adding up those rows
gives 0 >= a positive number, for any real scores: no Unigram model reproduces BPE on all of them.
(Real arithmetic: a float64 sum of 3+ scores rounds, and the certificate does not count on rounding.)
"""

import itertools
import time
from collections import Counter
from fractions import Fraction

from lib.unigram import viterbi

# -----------------------------------------------------------------------------
# one constraint row: a label against one other path of its lattice


def cuts(ids, token_len):
    """Interior cut positions of a path, as characters from the start.

    >>> cuts([5, 7], {5: 4, 7: 1})      # '####' + '#'
    {4}
    """
    return set(itertools.accumulate(token_len[i] for i in ids[:-1]))


def tie_margin(label, path, token_len):
    """1 when `path` wins a tie against `label` under HF's Viterbi (the largest cut where they differ is the
    label's), else 0: the least S(label) - S(path) that still emits the label."""
    a, b = cuts(label, token_len), cuts(path, token_len)
    differ = a ^ b
    return 1 if differ and max(differ) in a else 0


def row(label, path, token_len):
    """({token: count in label - count in path} without zeros, margin): S(label) - S(path) >= margin."""
    c = Counter(label)
    c.subtract(path)
    return {t: v for t, v in c.items() if v}, tie_margin(label, path, token_len)


# -----------------------------------------------------------------------------
# the LP (HiGHS): is there any score vector meeting these rows?


def silent_highs():
    """A HiGHS instance that prints nothing. The constructor prints HiGHS's banner (two lines, the first
    time in a process) before any option can be set, into the middle of a progress bar, so stdout's file
    descriptor points at /dev/null while it runs."""
    import os
    import sys

    import highspy

    sys.stdout.flush()
    try:
        saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no stdout descriptor to point elsewhere: the banner is all it costs
        h = highspy.Highs()
    else:
        try:
            os.dup2(null, 1)
            h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(null)
    h.setOptionValue("output_flag", False)
    return h


class RowLP:
    """Rows S(label) - S(path) >= margin over free scores, grown as Viterbi finds paths, each solve warm from
    the last basis (HiGHS keeps it when rows are added).

        >>> lp = RowLP(); lp.add([({1: 1, 2: -1}, 1)]); lp.solve(10)[0]
        'feasible'
    """

    def __init__(self):
        import highspy

        self.highspy, self.h = highspy, silent_highs()
        self.h.setOptionValue("presolve", "off")  # so that an infeasible LP comes with its dual ray
        # Column 0 is t in [0, 1], maximised, with every margin-0 row asking S(label) - S(path) >= t: a
        # solution then keeps those rows strict where it can, so Viterbi under it meets no float tie. It
        # changes no verdict (t = 0 is allowed).
        self.h.addVar(0.0, 1.0)
        self.h.changeColCost(0, -1.0)
        self.col, self.rows, self.empty_infeasible = {}, 0, False

    def add(self, rows):
        """Add rows [(coef, margin)]; a row with no token is 0 >= margin: infeasible when margin > 0."""
        import numpy as np

        inf = self.highspy.kHighsInf
        self.empty_infeasible |= any(not coef and m > 0 for coef, m in rows)
        rows = [(coef, m) for coef, m in rows if coef]
        new = sorted({t for coef, _ in rows for t in coef} - self.col.keys())
        if new:
            self.h.addVars(len(new), np.full(len(new), -inf), np.full(len(new), inf))
            for t in new:
                self.col[t] = len(self.col) + 1
        if rows:
            starts = np.cumsum([0] + [len(coef) + (m == 0) for coef, m in rows[:-1]]).astype(
                np.int32
            )
            index = np.array(
                [j for coef, m in rows for j in [self.col[t] for t in coef] + [0] * (m == 0)],
                dtype=np.int32,
            )
            value = np.array(
                [
                    v
                    for coef, m in rows
                    for v in [float(x) for x in coef.values()] + [-1.0] * (m == 0)
                ]
            )
            self.h.addRows(
                len(rows),
                np.array([float(m) for _, m in rows]),
                np.full(len(rows), inf),
                len(index),
                starts,
                index,
                value,
            )
            self.rows += len(rows)

    def solve(self, time_limit):
        """('feasible', {token: score}) / ('infeasible', the dual ray over the rows with a token, or None) /
        (another HiGHS status such as 'time limit reached', None)."""
        if self.empty_infeasible:
            return "infeasible", None
        if not self.rows:
            return "feasible", {}
        status_of = self.highspy.HighsModelStatus
        self.h.setOptionValue("time_limit", float(max(time_limit, 1e-3)))
        self.h.run()
        status = self.h.getModelStatus()
        if status == status_of.kOptimal:
            x = self.h.getSolution().col_value
            return "feasible", {t: x[j] for t, j in self.col.items()}
        if status in (status_of.kInfeasible, status_of.kUnboundedOrInfeasible):
            _, has, ray = self.h.getDualRay()
            return "infeasible", (list(ray) if has else None)
        return self.h.modelStatusToString(status).lower(), None


def feasible(rows, time_limit):
    """RowLP of rows, solved once: see RowLP.solve."""
    lp = RowLP()
    lp.add(rows)
    return lp.solve(time_limit)


def minimal_infeasible(rows, deadline):
    """Indices of a minimal infeasible subset of rows, or None when the deadline passes first. A row that
    is infeasible alone is one; else the rows of HiGHS's dual ray (a Farkas proof in floats) are a small
    infeasible set when it checks out, and a deletion filter drops each row whose removal keeps the rest
    infeasible."""
    alone = [r for r, (coef, m) in enumerate(rows) if not coef and m > 0]
    if alone:
        return alone[:1]
    keep = list(range(len(rows)))
    verdict, ray = feasible(rows, deadline - time.monotonic())
    if verdict == "infeasible" and ray is not None:
        with_tokens = [r for r, (coef, _) in enumerate(rows) if coef]
        support = [r for r, v in zip(with_tokens, ray) if abs(v) > 1e-9]
        if (
            support
            and feasible([rows[r] for r in support], deadline - time.monotonic())[0] == "infeasible"
        ):
            keep = support
    for r in sorted(
        keep, key=lambda r: -len(rows[r][0])
    ):  # the widest rows first: small certificates
        if time.monotonic() > deadline:
            return None
        trial = [k for k in keep if k != r]
        if (
            trial
            and feasible([rows[k] for k in trial], deadline - time.monotonic())[0] == "infeasible"
        ):
            keep = trial
    return keep


def farkas(rows):
    """Exact multipliers (Fractions, all > 0) proving rows infeasible, or None: the null space of the rows'
    token counts must be one vector of one sign with a positive margin sum (so for a minimal infeasible set).

        >>> farkas([({1: 1, 2: -1}, 1), ({1: -1, 2: 1}, 0)])      # a > b and b >= a
        [Fraction(1, 1), Fraction(1, 1)]
    """
    tokens = sorted({t for coef, _ in rows for t in coef})
    # A^T lambda = 0: one equation per token, one unknown per row
    m = [[Fraction(coef.get(t, 0)) for coef, _ in rows] for t in tokens]
    n = len(rows)
    pivots, r = [], 0
    for c in range(n):
        p = next((i for i in range(r, len(m)) if m[i][c]), None)
        if p is None:
            continue
        m[r], m[p] = m[p], m[r]
        m[r] = [v / m[r][c] for v in m[r]]
        for i in range(len(m)):
            if i != r and m[i][c]:
                f = m[i][c]
                m[i] = [a - f * b for a, b in zip(m[i], m[r])]
        pivots.append(c)
        r += 1
    free = [c for c in range(n) if c not in pivots]
    if len(free) != 1:
        return None
    lam = [Fraction(0)] * n
    lam[free[0]] = Fraction(1)
    for i, c in enumerate(pivots):
        lam[c] = -m[i][free[0]]
    if all(v < 0 for v in lam):
        lam = [-v for v in lam]
    if not all(v > 0 for v in lam) or sum(v * mg for v, (_, mg) in zip(lam, rows)) <= 0:
        return None
    return lam


def prove(rows, deadline):
    """What rows [(coef, margin)] that no scores meet all strictly (S(label) - S(path) > 0: an LP's dual
    ray with positive margins) prove, exactly: ('conflict', keep, multipliers) when a minimal subset keep
    is infeasible with its own margins too (no scores reproduce these labels: see farkas); ('tie', keep,
    multipliers) when it is not: then every score vector meeting those rows meets each with equality (the
    multipliers add them up to 0 >= 0, each term >= 0), so the labels hold only where two segmentations of a
    string score exactly the same, and float64 rounding decides, as in a permutation tie. None when the
    deadline passes or the exact check fails.

        >>> prove([({1: 1, 2: -1}, 1), ({1: -1, 2: 1}, 0)], time.monotonic() + 10)[0]      # a > b, b >= a
        'conflict'
        >>> prove([({1: 1, 2: -1}, 0), ({1: -1, 2: 1}, 0)], time.monotonic() + 10)[0]      # a >= b, b >= a
        'tie'
    """
    strict = [(coef, 1) for coef, _ in rows]
    keep = minimal_infeasible(strict, deadline)
    lam = farkas([strict[i] for i in keep]) if keep else None
    if lam is None:
        return None
    return ("conflict" if sum(x * rows[i][1] for x, i in zip(lam, keep)) > 0 else "tie"), keep, lam


def least_change(rows, cost, time_limit):
    """The score changes d of least sum cost[t] * |d[t]| with sum coef[t] * d[t] >= need for every row
    [(coef, need)] (HiGHS; d[t] = up[t] - down[t], both >= 0, keeps |d| linear). 04's exact repair: need is
    the margin a label lacks against a path under the current scores. ('feasible', {token: d, the nonzero
    ones}) / ('infeasible', the rows of HiGHS's dual ray, or None) / (another HiGHS status such as 'time
    limit reached', None). The ray's rows alone are infeasible (a Farkas proof in floats, with these needs):
    usually a handful of the thousands, and where a conflict among the labels is to be found.

        >>> least_change([({1: 1, 2: -1}, 2.0)], {1: 1.0, 2: 3.0}, 10)      # raising 1 is cheaper
        ('feasible', {1: 2.0})
        >>> least_change([({1: 1, 2: -1}, 1.0), ({1: -1, 2: 1}, 1.0), ({3: 1}, 0.0)], {1: 1.0, 2: 1.0, 3: 1.0}, 10)
        ('infeasible', [0, 1])
    """
    import highspy
    import numpy as np

    tokens = sorted({t for coef, _ in rows for t in coef})
    col = {t: j for j, t in enumerate(tokens)}
    n, inf = len(tokens), highspy.kHighsInf
    h = silent_highs()
    t_end = time.monotonic() + time_limit
    h.setOptionValue("time_limit", float(max(time_limit, 1e-3)))
    c = np.array([float(cost[t]) for t in tokens])
    h.addVars(2 * n, np.zeros(2 * n), np.full(2 * n, inf))
    h.changeColsCost(2 * n, np.arange(2 * n, dtype=np.int32), np.concatenate([c, c]))
    for coef, need in rows:
        index = np.array([col[t] for t in coef] + [n + col[t] for t in coef], dtype=np.int32)
        value = np.array([float(v) for v in coef.values()] + [-float(v) for v in coef.values()])
        h.addRow(float(need), inf, len(index), index, value)
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kOptimal:
        x = h.getSolution().col_value
        return "feasible", {t: x[j] - x[n + j] for t, j in col.items() if x[j] != x[n + j]}
    if status in (
        highspy.HighsModelStatus.kInfeasible,
        highspy.HighsModelStatus.kUnboundedOrInfeasible,
    ):
        _, has, ray = h.getDualRay()
        if (
            not has and time.monotonic() < t_end
        ):  # presolve found it: the simplex without it gives the ray
            h.setOptionValue("presolve", "off")
            h.setOptionValue("time_limit", float(max(t_end - time.monotonic(), 1e-3)))
            h.clearSolver()
            h.run()
            _, has, ray = h.getDualRay()
        return "infeasible", (
            [r for r, v in enumerate(ray) if abs(v) > 1e-9] or None
        ) if has else None
    return h.modelStatusToString(status).lower(), None


# -----------------------------------------------------------------------------
# cutting planes over a set of cases


class Search:
    """The state of certify(): the cases, the rows found so far (coef, margin, case, path), the cases still in
    play, and the LP of their rows."""

    def __init__(self, cases, token_len):
        self.cases, self.token_len = cases, token_len
        self.rows, self.keys, self.live = [], set(), set(range(len(cases)))
        self.lp, self.pending = RowLP(), []

    def add(self, k, path):
        """A row for case k against path, unless path is its label or has a row already; True if added."""
        key = (k, tuple(path))
        if key in self.keys or tuple(path) == tuple(self.cases[k][2]):
            return False
        self.keys.add(key)
        coef, margin = row(self.cases[k][2], path, self.token_len)
        self.rows.append((coef, margin, k, tuple(path)))
        self.pending.append((coef, margin))
        return True

    def solve(self, time_limit):
        self.lp.add(self.pending)
        self.pending = []
        return self.lp.solve(time_limit)

    def active(self):
        return [r for r in self.rows if r[2] in self.live]

    def set_aside(self, core, lam):
        """A certified conflict: its record; its cases leave the search, and the LP is rebuilt without them."""
        cases = self.cases
        record = {
            "cases": sorted({cases[k][0] for _, _, k, _ in core}),
            "verified": lam is not None,
            "rows": [
                (cases[k][0], list(cases[k][2]), list(p), m, str(x) if lam else None)
                for (_, m, k, p), x in zip(core, lam or [None] * len(core))
            ],
        }
        self.live -= {k for _, _, k, _ in core}
        self.lp, self.pending = RowLP(), [(c, m) for c, m, _, _ in self.active()]
        return record


def certify(cases, token_len, start_paths=None, time_limit=60.0, max_rounds=500, max_conflicts=50):
    """Search the cases [(name, lattice, label ids)] for sets of labels no scores can all meet.

    start_paths: a first path to beat per case (the current Viterbi output), or None. Returns {"status",
    "conflicts": [{"cases": [names], "rows": [(name, label, path, margin, multiplier)], "verified": the
    exact Farkas check passed}], "rounds", "rows", "seconds"}. Each conflict found is set aside with its
    cases before the search goes on with the rest. status: 'consistent' (scores exist that give every label
    left: none of them is in a conflict) / 'conflicts' (the same, after setting conflicts aside) / 'conflict
    limit' (max_conflicts found; the rest unchecked) / 'time limit' / 'float tie' (the LP's scores meet a
    row only with equality and Viterbi in floats breaks the tie the other way: unsettled) / 'rounds'."""
    t0 = time.monotonic()
    deadline = t0 + time_limit
    search = Search(cases, token_len)
    for k, path in enumerate(start_paths or []):
        search.add(k, path)
    conflicts, status, rounds = [], "rounds", 0
    while rounds < max_rounds:
        rounds += 1
        if time.monotonic() > deadline:
            status = "time limit"
            break
        verdict, x = search.solve(deadline - time.monotonic())
        if verdict == "infeasible":
            active = search.active()
            keep = minimal_infeasible([(c, m) for c, m, _, _ in active], deadline)
            if keep is None:
                status = "time limit"
                break
            core = [active[i] for i in keep]
            conflicts.append(search.set_aside(core, farkas([(c, m) for c, m, _, _ in core])))
            if not search.live:
                status = "conflicts"
                break
            if len(conflicts) >= max_conflicts:
                status = "conflict limit"
                break
            continue
        if verdict != "feasible":
            status = "time limit" if "time limit" in verdict else verdict
            break
        scores = Counter(x)  # tokens in no row score 0
        paths = {k: viterbi(cases[k][1], scores) for k in sorted(search.live)}
        if not sum(search.add(k, p) for k, p in paths.items()):
            # no new path: every label holds, unless a float tie in a row the LP meets only with equality
            exact = all(tuple(p) == tuple(cases[k][2]) for k, p in paths.items())
            status = ("conflicts" if conflicts else "consistent") if exact else "float tie"
            break
    return {
        "status": status,
        "conflicts": conflicts,
        "rounds": rounds,
        "rows": len(search.rows),
        "seconds": round(time.monotonic() - t0, 2),
    }
