"""From a task metric to pass / fail / inconclusive.

A verdict compares the primary metric with its tolerance *through its 95 % interval*: pass when
the whole interval is on the good side, fail when the whole interval is on the bad side,
inconclusive when it straddles the tolerance — then the reason says about how many more samples
would settle it at the observed rate. A metric measured on a single sample has no interval and is
decided only if it misses (fail); a hit on that little evidence is inconclusive. A pooled share of
counted trials (pixels, detections) that all come from one sample cannot pass either: the trials of
one image are not independent. A NaN metric (nothing could be measured) is inconclusive. Tensor
metrics (cosines) never reach this module.

No interval is ever zero width (issue 21: "CER increase 0.000 (95% CI 0.00-0.00) -> pass" on 8
identical lines). Every interval accounts for the units the metric counts as well as the samples:
shares of counted trials hull the bootstrap over samples with the Wilson interval of the units
(pixels, detections); a difference of error rates over units (CER increase over characters, mAP
drop over ground-truth boxes) hulls it with the paired interval of Agresti & Min over those units
(160 characters without a change bound a CER increase by about ±1.2 %, not 0); a mean of [0, 1]
values hulls it with the Wilson interval of (sum, count). An interval that would still have no
width (a custom metric with the same value on every sample and no units) is no interval: the
metric can then fail but never pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qbench.judge import intervals


@dataclass
class Evidence:
    """How the primary metric was measured, so its interval can be drawn.

    kind "wilson": successes k of n trials; "paired_drop": discordant counts n10, n01 of n;
    "ratio": per-sample numerators and denominators (the metric is sum(num)/sum(den)); with
    ``counts`` the interval is the hull of the bootstrap and the Wilson interval of the pooled counts;
    "interval": the adapter drew the interval itself (``interval``; None: none could be drawn);
    "point": nothing to resample (the value is decided as is)."""

    kind: str
    k: float = 0.0
    n: int = 0
    n10: float = 0.0
    n01: float = 0.0
    num: tuple = ()
    den: tuple = ()
    unit: str = "samples"
    interval: tuple | None = None  # kind "interval": drawn by the adapter (e.g. a bootstrap of mAP)
    counts: bool = False           # kind "ratio": num/den are success/trial counts (a pooled share)
    # a difference of two error rates over counted units (characters, boxes): (units worse in the
    # candidate, units better in the candidate, units counted). Its paired interval over the units
    # is hulled with the sample bootstrap, so identical samples cannot make the interval collapse
    unit_changes: tuple | None = None
    bounded: bool = False          # kind "ratio": every per-sample value lies in [0, 1] (a mean of shares)


@dataclass
class Decision:
    verdict: str
    reason: str
    interval: tuple | None
    more_samples: int | None


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.3f}" if abs(v) < 1000 else f"{v:.4g}"


def _fmt_ci(iv: tuple) -> str:
    if max(abs(iv[0]), abs(iv[1])) < 0.01 and iv != (0.0, 0.0):
        return f"95% CI {iv[0]:.3g}-{iv[1]:.3g}"
    # as many decimals as it takes to show two different bounds (an interval is never a point,
    # and must not read as one: 0.99996-1.00000, not 1.00-1.00)
    digits = 2
    while digits < 6 and f"{iv[0]:.{digits}f}" == f"{iv[1]:.{digits}f}":
        digits += 1
    return f"95% CI {iv[0]:.{digits}f}-{iv[1]:.{digits}f}"


def decide(label: str, value: float, tolerance: float, higher_is_better: bool, evidence: Evidence,
           option: str) -> Decision:
    """Decide one primary metric. label: the metric as the reason names it ("top-1 agreement");
    option: the tolerance's option name (min_agreement, max_drop, ...)."""
    if value is None or math.isnan(value):
        return Decision("inconclusive", f"{label} could not be measured (no usable samples) -> inconclusive", None, None)
    interval = _interval(evidence)
    good = (lambda x: x >= tolerance) if higher_is_better else (lambda x: x <= tolerance)
    side = "at least" if higher_is_better else "at most"
    target = f"{option} {_fmt(tolerance)} ({side})"
    if interval is None:
        # no spread to measure: a miss is a miss, but a hit on this little evidence proves nothing
        if evidence.kind == "point":
            why = "nothing to compare, no interval"
        elif evidence.n >= 2:
            why = f"the same value on all {evidence.n} samples and no unit count to bound it, no interval"
        else:
            why = "one sample, no interval"
        if not good(value):
            return Decision("fail", f"{label} {_fmt(value)} ({why}) misses {target} -> fail", None, None)
        return Decision("inconclusive", f"{label} {_fmt(value)} ({why}) meets {target} -> inconclusive; "
                        f"more {evidence.unit}{' with content' if evidence.kind == 'point' else ''} would settle it", None, 1)
    lo, hi = interval
    informative = sum(1 for d in evidence.den if d > 0) if evidence.kind == "ratio" and evidence.counts else None
    if good(lo) and good(hi) and informative is not None and informative < 2:
        # the pooled counts are tight, but they come from one sample: pixels or boxes of one image
        # are not independent trials, so one image cannot vouch for the next
        reason = (f"{label} {_fmt(value)} ({_fmt_ci(interval)}) meets {target} but only {informative} "
                  f"sample(s) had anything to compare -> inconclusive; at least {2 - informative} more "
                  f"sample(s) with content would settle it")
        return Decision("inconclusive", reason, interval, 2 - informative)
    if good(lo) and good(hi):
        verdict, rel = "pass", "meets"
    elif not good(lo) and not good(hi):
        verdict, rel = "fail", "misses"
    else:
        verdict = "inconclusive"
        rel = "meets" if good(value) else "misses"
    reason = f"{label} {_fmt(value)} ({_fmt_ci(interval)}) {rel} {target} -> {verdict}"
    more = None
    if verdict == "inconclusive":
        total = _needed(evidence, value, interval, tolerance)
        if total is None:
            reason += f"; at this rate no number of {evidence.unit} would settle it"
        else:
            more = max(1, total - evidence.n)
            reason += f"; about {more} more {evidence.unit} would settle it"
    return Decision(verdict, reason, interval, more)


def _interval(ev: Evidence) -> tuple | None:
    """The 95 % interval of the evidence, or None. Never zero width: an interval that would collapse
    to a point (identical samples, nothing counted) is None, and the verdict then treats the metric
    as unproven (module docstring)."""
    iv = _raw_interval(ev)
    if iv is None or not (iv[1] > iv[0]):
        return None
    return iv


def _hull(a: tuple | None, b: tuple | None) -> tuple | None:
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), max(a[1], b[1]))


def _raw_interval(ev: Evidence) -> tuple | None:
    units = None
    if ev.unit_changes is not None and ev.unit_changes[2] > 0:
        worse, better, counted = ev.unit_changes
        units = intervals.paired_drop(worse, better, counted)
    if ev.kind == "wilson":
        return intervals.wilson(ev.k, ev.n) if ev.n >= 1 else None
    if ev.kind == "paired_drop":
        return intervals.paired_drop(ev.n10, ev.n01, ev.n) if ev.n >= 1 else None
    if ev.kind == "ratio":
        boot = intervals.bootstrap_ratio(ev.num, ev.den)
        if not ev.counts:
            if ev.bounded and sum(ev.den) > 0:
                # a mean of per-sample values in [0, 1]: the Wilson interval of (sum, count) is
                # conservative for it (a 0/1 variable has the largest variance of any [0, 1]
                # variable with that mean), so identical samples still leave a width
                if boot is None:  # one sample: nothing said about the next one
                    return None
                return _hull(boot, intervals.wilson(min(max(float(sum(ev.num)), 0.0), float(sum(ev.den))), float(sum(ev.den))))
            # the unit interval widens a sample interval, never stands in for a missing one
            return None if boot is None else _hull(boot, units)
        # a pooled share of counted trials (matched detections, equal characters): the Wilson
        # interval of the pooled counts keeps the interval from collapsing to a point when every
        # sample agrees exactly — the bootstrap alone would call 3 perfect lines proof of 0 % CER —
        # and the bootstrap adds the spread between samples that the pooled count ignores
        trials = float(sum(ev.den))
        if trials <= 0:
            return boot
        share = min(max(float(sum(ev.num)), 0.0), trials)
        wil = intervals.wilson(share, trials)
        return wil if boot is None else (min(wil[0], boot[0]), max(wil[1], boot[1]))
    if ev.kind == "interval":
        return None if ev.interval is None else _hull(ev.interval, units)
    return None


def _needed(ev: Evidence, value: float, interval: tuple, tolerance: float) -> int | None:
    if ev.kind == "wilson":
        return intervals.wilson_samples_needed(ev.k / ev.n, ev.n, tolerance)
    if ev.kind == "paired_drop":
        return intervals.paired_drop_samples_needed(ev.n10, ev.n01, ev.n, tolerance)
    return intervals.bootstrap_samples_needed(value, interval, ev.n, tolerance)
