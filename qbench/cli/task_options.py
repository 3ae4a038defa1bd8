"""The task-judge options every judging command shares (``run``, ``demo``, ``compare``): one
definition, so they say the same thing with the same names everywhere.

Not a command module: it defines no COMMANDS and is not in ``_COMMAND_MODULES``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from qbench.errors import QbenchError

TASK_HELP = ("What the model's outputs mean, which decides every verdict: generic (default: each output read "
             "as its user reads it: probabilities at their decisions, logits as probabilities, scalars by "
             "tolerance, the rest per channel, range-normalised), classify, detect, segment, ctc, embedding, "
             "stream (recurrent models over whole streams), or auto (guess from shapes and metadata, and say "
             "so). See docs/JUDGE.md.")


def task_options(func):
    options = [
        click.option("--task", default=None, metavar="TASK", help=TASK_HELP),
        click.option("--labels", type=click.Path(path_type=Path), default=None,
                     help="Ground-truth labels JSON (sample file -> class / boxes / text) [labels.json in the data folder, if present]."),
        click.option("--task-option", "task_option", multiple=True, metavar="KEY=VALUE",
                     help="A task option or tolerance, e.g. score_threshold=0.25, strides=8,16,32; repeatable."),
        click.option("--max-drop", type=float, default=None,
                     help="Largest accepted drop of the task metric against FP32 / labels (e.g. 0.01 = one point)."),
        click.option("--min-agreement", type=float, default=None,
                     help="Smallest accepted agreement with FP32 (share of samples / detections / pixels, task-dependent)."),
        click.option("--evaluator", default=None, metavar="FILE.py:FUNCTION",
                     help="A custom evaluator: FILE.py:FUNCTION, module:function or an installed entry point "
                          "(signature in docs/JUDGE.md); judged by the same verdict machinery."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def parse_value(text: str):
    """A task option's value: JSON when it parses (0.25, true, [8, 16]), a comma list of numbers
    (8,16,32), else the text itself (a charset file, a layout name)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "," in text:
        parts = [p.strip() for p in text.split(",")]
        try:
            return [json.loads(p) for p in parts]
        except ValueError:
            return parts
    return text


def judge_settings(task, labels, task_option, max_drop, min_agreement, evaluator, default_task: str = "generic",
                   default_options: dict | None = None) -> tuple[str, dict, Path | None]:
    """(task, options, labels path) from the shared options, checked: one error line when wrong."""
    if evaluator and task not in (None, "", evaluator):
        raise QbenchError(f"give --task {task} or --evaluator {evaluator}, not both")
    chosen = evaluator or task or default_task  # the judge refuses an unknown task or evaluator
    options = dict(default_options or {}) if not (task or evaluator) else {}
    for item in task_option:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise QbenchError(f"--task-option takes KEY=VALUE, not {item!r}")
        options[key] = parse_value(value.strip())
    for key, value, low, high in (("max_drop", max_drop, 0.0, 1.0), ("min_agreement", min_agreement, 0.0, 1.0)):
        if value is None:
            continue
        if not (low <= value <= high):
            raise QbenchError(f"--{key.replace('_', '-')} must lie in [{low:g}, {high:g}], not {value}")
        options[key] = value
    if labels is not None and not Path(labels).is_file():
        raise QbenchError(f"labels file not found: {labels}")
    return chosen, options, labels
