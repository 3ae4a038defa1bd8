"""``qbench check``, ``qbench history``, ``qbench diff`` and ``qbench sweep``: qbench across runs,
models and machines (CI gates, the store's history, run-to-run differences, grids of runs)."""

from __future__ import annotations

from pathlib import Path

import click

from qbench.cli.common import common_options
from qbench.errors import QbenchError
from qbench.fleet.runs import DEFAULT_STORE

# check, history and diff print only their result, which --quiet keeps (as every command does)

_STORE = click.option("--store", type=click.Path(path_type=Path), default=None,
                      help=f"Results store (SQLite) for run ids and history [{DEFAULT_STORE}].")


@click.command("check")
@click.argument("run")
@click.option("--baseline", default=None,
              help="Baseline RUN (results.json, report folder or store run id), or 'previous': the model's "
                   "run recorded before this one.")
@click.option("--min", "mins", multiple=True, metavar="NAME=V",
              help="Lower bound on a metric of every checked candidate (e.g. output_cosine_min=0.99, "
                   "task.top1_agreement=0.98); repeatable.")
@click.option("--max", "maxs", multiple=True, metavar="NAME=V",
              help="Upper bound on a metric (e.g. output_rel_l2_max=0.05); repeatable.")
@click.option("--require-pass", multiple=True, metavar="PRECISION",
              help="This candidate's verdict must be pass; repeatable.")
@click.option("--max-drop", type=float, default=None,
              help="Largest allowed worsening of the deciding metric against the baseline [0.005].")
@click.option("--precision", "precisions", multiple=True, help="Check only these candidates; repeatable [all].")
@click.option("--junit", type=click.Path(path_type=Path), default=None, help="Also write JUnit XML here (for CI).")
@_STORE
@common_options
@click.pass_context
def check_command(ctx, run, baseline, mins, maxs, require_pass, max_drop, precisions, junit, store, quiet):
    """Gate on RUN (results.json, report folder or store run id): exit 0 pass, 1 regression, 2 error.

    Checks tolerances (--min/--max/--require-pass) and, with --baseline, that no candidate that passed
    there fails now, that the deciding metric (the task's primary metric, else the worst-sample output
    cosine) did not get worse by more than --max-drop and that the recommendation did not move up.
    With neither, some candidate must pass. Prints one line: PASS or REGRESSION and the reason."""
    from qbench.fleet.check import DEFAULT_MAX_DROP, check_run, parse_bounds, write_junit
    from qbench.fleet.runs import load_run, previous_run

    try:
        view = load_run(run, store)
        base = None
        if baseline == "previous":
            base = previous_run(view, store)
        elif baseline:
            base = load_run(baseline, store)
        result = check_run(view, base, parse_bounds(mins), parse_bounds(maxs), require_pass,
                           DEFAULT_MAX_DROP if max_drop is None else max_drop, precisions)
    except QbenchError as exc:
        if junit:
            write_junit(junit, None, error=str(exc))
        raise
    if junit:
        write_junit(junit, result)
    click.echo(result.reason())
    ctx.exit(result.exit_code)


@click.command("history")
@click.option("--model", default=None, help="Only this model's runs.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--last", type=click.IntRange(min=1), default=None, help="Only the newest N invocations.")
@_STORE
@common_options
def history_command(model, fmt, last, store, quiet):
    """The runs recorded in the store, one row per candidate (verdict, task, deciding metric)."""
    from qbench.fleet.history import history, render

    click.echo(render(history(store or DEFAULT_STORE, model, last), fmt), nl=False)


@click.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--tolerance", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Changes up to this (absolute) are not differences.")
@_STORE
@common_options
def diff_command(run_a, run_b, tolerance, store, out, quiet):
    """Which verdicts, task metrics and tensors changed from RUN_A to RUN_B (results.json, report
    folder or store run id). With --out DIR also diff.html, diff.json and diff_tensors.csv."""
    from qbench.fleet.diff import diff_runs, write_diff
    from qbench.fleet.runs import load_run

    d = diff_runs(load_run(run_a, store), load_run(run_b, store), tolerance)
    click.echo(d.summary())
    if out is not None:
        click.echo(str(write_diff(d, out)))


@click.command("sweep")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Cells run at once on this machine [CPU cores, at most the number of cells].")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run the cells on a Ray cluster: 'auto', ray://HOST:PORT, or 'local' (start one on this machine).")
@click.option("--rerun", is_flag=True, help="Run every cell again, even the finished ones.")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Run only this model of the spec (repeatable): a subset of a large sweep.")
@common_options
def sweep_command(spec, jobs, ray_address, rerun, models, out, limit, quiet):
    """Run the grid of models x precisions x calibrators x tasks in SPEC (YAML or TOML), in parallel;
    finished cells are skipped (resumable). Writes one index page across models."""
    from qbench.fleet.sweep import load_spec, run_sweep

    plan = load_spec(spec, out=out, limit=limit, only=list(models) or None)
    # fork=True: this command has run no model and started no thread pool (qbench.fleet.sweep)
    result = run_sweep(plan, jobs=jobs, ray_address=ray_address, rerun=rerun, fork=True,
                       echo=(lambda m: None) if quiet else (lambda m: click.echo(m, err=True)))
    click.echo(f"{result.done} cell(s) done ({result.skipped} already finished), {result.failed} failed", err=True)
    click.echo(str(result.index))
    if result.failed:
        raise QbenchError(f"{result.failed} cell(s) failed; see {result.index} (rerun the sweep to retry them)")


COMMANDS = [check_command, history_command, diff_command, sweep_command]
