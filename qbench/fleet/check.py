"""``qbench check``: gate a CI pipeline on a run, against tolerances and/or a baseline run.

Exit status: 0 every check passed, 1 a regression (the first reason printed on one line), 2 the
run, baseline or a tolerance could not be read (``QbenchError``). The checks, in order:

- tolerances given by the user: ``--min NAME=V`` / ``--max NAME=V`` on every checked candidate, where
  NAME is an output metric (``output_cosine_min``, ``output_rel_l2_max``, ...) or a task metric
  (``task.top1_agreement``); ``--require-pass P``: candidate P's verdict must be "pass";
- against a baseline: a candidate that passed there must still pass; its deciding metric (the
  task's primary metric when the judge ran, the worst-sample output cosine otherwise) may not get
  worse by more than ``--max-drop``; the recommended precision may not move up (INT8 -> FP16);
- with neither: the run must recommend something below FP32 (some candidate passes).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from qbench import atomic
from qbench.advise import precision_rank
from qbench.errors import QbenchError
from qbench.fleet.runs import RunView

DEFAULT_MAX_DROP = 0.005


@dataclass
class Check:
    name: str
    ok: bool
    message: str


@dataclass
class CheckResult:
    run: RunView
    baseline: RunView | None
    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def reason(self) -> str:
        """One line: the first regression (and how many more), or what passed."""
        bad = self.failures
        if bad:
            more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
            return f"REGRESSION: {self.run.model}: {bad[0].message}{more}"
        against = f" against {self.baseline.label}" if self.baseline else ""
        return f"PASS: {self.run.model}: {len(self.checks)} check(s) passed{against}"


def parse_bounds(items) -> dict[str, float]:
    """``["task.f1=0.9", "output_cosine_min=0.99"]`` -> {name: value}; QbenchError on a malformed one."""
    out = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise QbenchError(f"tolerance {item!r} is not NAME=NUMBER (e.g. output_cosine_min=0.99)") from None
    return out


def check_run(run: RunView, baseline: RunView | None = None, mins=None, maxs=None, require_pass=(),
              max_drop: float = DEFAULT_MAX_DROP, precisions=None) -> CheckResult:
    """Every check that applies, in order; a missing metric or precision is an error, not a pass."""
    if max_drop < 0 or math.isnan(max_drop):
        raise QbenchError(f"--max-drop must be a number ≥ 0, not {max_drop}")
    mins, maxs = dict(mins or {}), dict(maxs or {})
    checked = _select(run, precisions)
    result = CheckResult(run, baseline)
    add = result.checks.append

    for name, bound, is_min in [(n, v, True) for n, v in mins.items()] + [(n, v, False) for n, v in maxs.items()]:
        for p, cand in checked.items():
            metrics = cand.metrics()
            if name not in metrics:
                known = ", ".join(sorted(metrics)) or "none"
                raise QbenchError(f"{run.label}: candidate {p} has no metric {name!r} (known: {known})")
            value = metrics[name]
            ok = not math.isnan(value) and (value >= bound if is_min else value <= bound)
            sign = "≥" if is_min else "≤"
            add(Check(f"{p}: {name} {sign} {bound:g}", ok,
                      f"{p}: {name} {_fmt(value)} {'<' if is_min else '>'} {bound:g}" if not ok
                      else f"{p}: {name} {_fmt(value)} {sign} {bound:g}"))
    for p in require_pass or ():
        if p not in run.candidates:
            raise QbenchError(f"{run.label} has no {p} candidate (has {', '.join(run.candidates)})")
        verdict = run.candidates[p].verdict
        add(Check(f"{p}: verdict pass", verdict == "pass", f"{p}: verdict {verdict or 'unknown'}, required pass"))

    if baseline is not None:
        if baseline.model and run.model and baseline.model != run.model:
            raise QbenchError(f"the baseline is a run of {baseline.model!r}, not of {run.model!r}")
        for p, base in _select(baseline, precisions).items():
            cand = run.candidates.get(p)
            if cand is None:
                add(Check(f"{p}: present", False, f"{p}: candidate missing (the baseline has it)"))
                continue
            if base.verdict == "pass":
                add(Check(f"{p}: verdict vs baseline", cand.verdict == "pass",
                          f"{p}: verdict {cand.verdict or 'unknown'} (baseline pass)"))
            add(_drop_check(p, cand, base, max_drop))
        if run.recommendation and baseline.recommendation:
            worse = precision_rank(run.recommendation) > precision_rank(baseline.recommendation)
            add(Check("recommendation vs baseline", not worse,
                      f"recommendation {run.recommendation} (baseline {baseline.recommendation})"))

    if not result.checks:  # nothing asked: the run must ship something below FP32
        passing = [p for p, c in checked.items() if c.verdict == "pass"]
        add(Check("some candidate passes", bool(passing),
                  f"no candidate passes (verdicts: {', '.join(f'{p} {c.verdict}' for p, c in checked.items())})"
                  if not passing else f"{', '.join(passing)} pass"))
    return result


def _drop_check(p: str, cand, base, max_drop: float) -> Check:
    name = base.deciding
    now, before = cand.metrics().get(name, math.nan), base.metrics().get(name, math.nan)
    if math.isnan(before):
        return Check(f"{p}: {name} vs baseline", True, f"{p}: {name} not measured in the baseline")
    higher = base.higher_is_better(name)
    change = (now - before) if higher else (before - now)  # > 0: better
    ok = not math.isnan(now) and change >= -max_drop
    word = "dropped" if higher else "rose"
    return Check(f"{p}: {name} vs baseline", ok,
                 f"{p}: {name} {word} from {_fmt(before)} to {_fmt(now)} (more than --max-drop {max_drop:g})"
                 if not ok else f"{p}: {name} {_fmt(now)} (baseline {_fmt(before)})")


def _select(run: RunView, precisions) -> dict:
    if not precisions:
        return dict(run.candidates)
    missing = [p for p in precisions if p not in run.candidates]
    if missing:
        raise QbenchError(f"{run.label} has no {missing[0]} candidate (has {', '.join(run.candidates)})")
    return {p: run.candidates[p] for p in precisions}


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def junit_xml(result: CheckResult | None, error: str | None = None, model: str = "") -> str:
    """JUnit XML as CI systems read it: one testcase per check, <failure> for a regression, one
    <error> testcase when the check could not run at all."""
    suite = ET.Element("testsuite", name="qbench check")
    cases = []
    if result is not None:
        model = result.run.model
        for c in result.checks:
            case = ET.Element("testcase", classname=f"qbench.{_safe(model)}", name=c.name)
            if not c.ok:
                ET.SubElement(case, "failure", message=c.message, type="regression").text = c.message
            cases.append(case)
    if error is not None:
        case = ET.Element("testcase", classname=f"qbench.{_safe(model) or 'check'}", name="qbench check")
        ET.SubElement(case, "error", message=error, type="error").text = error
        cases.append(case)
    suite.extend(cases)
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path, result: CheckResult | None, error: str | None = None) -> None:
    atomic.write_text(path, junit_xml(result, error))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
