"""Mixed precision: the smallest set of layers kept in float for which INT8 passes the task verdict.

From the sensitivity ranking (best ``gain_if_float`` first):

1. **Grow, verified**: keep the first k ranked layers in float for k = 1, 2, 4, 8, ... (capped by
   ``max_float``) and judge each set, until one passes. Doubling finds a passing prefix in
   log2(k) + 1 judged runs where one-at-a-time would need k.
2. **Bisect** between the last failing and the first passing prefix for the shortest passing prefix
   (the ranking is not guaranteed monotone, so every answer is a judged run, never an inference).
3. **Prune**: try dropping each kept layer, least sensitive first; keep the drop when the set
   still passes. The result is minimal: no single layer can be removed. Bisection and pruning keep
   the verdict tier of the first passing prefix (a pass is not traded for an inconclusive).

"Passes" here means ``judging.acceptable``: a pass, or an inconclusive verdict whose point estimate
meets the tolerance (the judge says more samples would settle it; the verdict reported stays
inconclusive). Without that, a small judging part could never stop the search.

Each judged set is one run of the gated session (``sensitivity.GatedRunner``), so a step costs one
pass over the judging part. ``max_float`` bounds the set size and ``time_budget_s`` the wall time;
when neither allows a pass, the best set seen is returned with its (failing or inconclusive)
verdict. Every set judged is a row of the Pareto table (set size vs task score); the rows no
smaller-and-better set dominates are marked ``pareto``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from qbench.errors import QbenchError
from qbench.search.judging import acceptable, rank_key, tier

TABLE_COLUMNS = ["step", "action", "kept", "layers", "verdict", "score", "primary", "value", "pareto", "part"]


@dataclass
class MixedResult:
    kept: list[str]  # layers kept in float (the search's own; the user's --keep-float not included)
    result: object  # TaskResult of that set on the judging part
    table: pd.DataFrame  # every set judged (TABLE_COLUMNS)
    passed: bool
    stopped: str  # why the search ended
    seconds: float


def search(runner, ranked: list[str], *, max_float: int = 8, time_budget_s: float | None = None,
           echo=None, start_result=None, start: str = "INT8 as calibrated", kept_in: str = "float") -> MixedResult:
    """The smallest passing set of ``ranked`` layers (see module docstring). ``runner.evaluate(kept)``
    judges one set; ``start`` / ``kept_in`` word the messages (qbench.search.format_mixed moves layers
    to a higher format instead of float)."""
    if max_float < 0:
        raise QbenchError(f"--max-float must be at least 0, not {max_float}")
    say = echo or (lambda _m: None)
    started = time.perf_counter()
    deadline = None if time_budget_s is None else started + time_budget_s
    rows: list[dict] = []
    seen: dict[tuple, object] = {}

    def judge(kept, action):
        key = tuple(sorted(kept))
        if key not in seen:
            seen[key] = start_result if (not kept and start_result is not None) else runner.evaluate(kept)
            r = seen[key]
            rows.append({"step": len(rows), "action": action, "kept": len(kept), "layers": ", ".join(kept),
                         "verdict": r.verdict, "score": float(r.score), "primary": r.primary,
                         "value": r.metrics.get(r.primary), "part": runner.reference.part})
            say(f"qbench: mixed: {action}: {len(kept)} layer(s) in {kept_in}: {r.verdict} "
                f"({r.primary} {r.metrics.get(r.primary, float('nan')):.4g})")
        return seen[key]

    def out_of_time():
        return deadline is not None and time.perf_counter() > deadline

    limit = min(max_float, len(ranked))
    best_kept, best = [], judge([], start)
    stopped = f"{start} passes without any layer in {kept_in}"
    if not acceptable(best):
        stopped = f"no set of at most {limit} layer(s) in {kept_in} passes"
        lo, hi, k = 0, None, 1  # lo: longest prefix known to fail; hi: shortest known to pass
        while limit and k <= limit:
            if out_of_time():
                stopped = "time budget spent while growing"
                break
            r = judge(ranked[:k], f"grow to the first {k}")
            if _better(r, k, best, len(best_kept)):
                best_kept, best = ranked[:k], r
            if acceptable(r):
                hi, goal = k, tier(r)  # bisect and prune keep this tier: a pass is not traded for less
                break
            lo = k
            k = limit if k < limit and 2 * k > limit else 2 * k
        if hi is not None:
            while hi - lo > 1 and not out_of_time():
                mid = (lo + hi) // 2
                r = judge(ranked[:mid], f"bisect: first {mid}")
                if acceptable(r) and tier(r) <= goal:
                    hi = mid
                else:
                    lo = mid
            best_kept, best = ranked[:hi], seen[tuple(sorted(ranked[:hi]))]
            for name in reversed(list(best_kept)):
                if len(best_kept) <= 1 or out_of_time():
                    break
                trial = [n for n in best_kept if n != name]
                r = judge(trial, f"prune {name}")
                if acceptable(r) and tier(r) <= goal:
                    best_kept, best = trial, r
            stopped = f"passes with {len(best_kept)} layer(s) in {kept_in}; no single one can be dropped"
            if out_of_time():
                stopped = f"passes with {len(best_kept)} layer(s) in {kept_in} (time budget spent while pruning)"
    table = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if c != "pareto"])
    table["pareto"] = _pareto(table)
    return MixedResult(list(best_kept), best, table[TABLE_COLUMNS], acceptable(best), stopped,
                       time.perf_counter() - started)


def _better(r, size: int, best, best_size: int) -> bool:
    """Verdict tier, then score; on a tie the smaller set (it dominates), then the judge's margin."""
    a, b = rank_key(r), rank_key(best)
    return (a[0], a[1], size, a[2]) < (b[0], b[1], best_size, b[2])


def _pareto(table: pd.DataFrame) -> list[bool]:
    """A row is on the front when no other row has at most as many layers and a higher score."""
    marks = []
    for _, row in table.iterrows():
        dominated = ((table["kept"] <= row["kept"]) & (table["score"] > row["score"])).any()
        marks.append(not dominated)
    return marks
