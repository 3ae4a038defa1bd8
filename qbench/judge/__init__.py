"""The judge: turns a run's outputs into the numbers a user of the task reads, per sample, against
FP32 (and ground-truth labels when given), and decides pass / fail / inconclusive on them.

    from qbench.judge import make_judge, load_labels, TASKS
    labels = load_labels("labels.json", sample_names)          # or None
    judge = make_judge("detect", graph, {"score_threshold": 0.25}, labels)
    acc = judge.start()                                          # one per candidate
    acc.add(i, name, ref_outputs, cand_outputs, feed)            # per sample
    result = acc.finish()                                        # TaskResult

See docs/JUDGE.md for every task, option and default.
"""

from __future__ import annotations

import importlib
import logging

from qbench.errors import QbenchError
from qbench.judge.base import Accumulator, Judge, Summary
from qbench.judge.labels import Labels, load_labels
from qbench.judge.result import TaskResult
from qbench.judge.verdict import Evidence

log = logging.getLogger("qbench")

TASKS = ("auto", "generic", "classify", "detect", "segment", "ctc", "embedding", "stream")

# task -> (module, accumulator class); modules load lazily, so `import qbench.judge` stays cheap
_ADAPTERS = {
    "generic": ("qbench.judge.generic", "GenericAccumulator"),
    "classify": ("qbench.judge.classify", "ClassifyAccumulator"),
    "detect": ("qbench.judge.detect", "DetectAccumulator"),
    "segment": ("qbench.judge.segment", "SegmentAccumulator"),
    "ctc": ("qbench.judge.ctc", "CtcAccumulator"),
    "embedding": ("qbench.judge.embedding", "EmbeddingAccumulator"),
    # recurrent models over whole streams: qbench.judge.stream.judge_stream runs them; meanwhile the
    # per-chunk comparison (stored state) is judged generically
    "stream": ("qbench.judge.stream", "StreamChunkAccumulator"),
}

# which label kind each task reads (None: the task takes no labels)
_LABEL_KIND = {"generic": None, "classify": "class", "detect": "boxes", "segment": None, "ctc": "text", "embedding": None,
               "stream": None}


def task_defaults(task: str) -> dict:
    """The options of a task with their defaults (a copy)."""
    module = importlib.import_module(_ADAPTERS[task][0])
    return dict(module.DEFAULTS)


def _all_option_names() -> set:
    names = set()
    for task in _ADAPTERS:
        try:
            names |= set(task_defaults(task))
        except ImportError:
            pass
    from qbench.judge.custom import DEFAULTS as custom_defaults
    return names | set(custom_defaults)


def _merge_options(task: str, defaults: dict, options: dict | None) -> dict:
    merged = dict(defaults)
    unused = []
    for key, value in (options or {}).items():
        if value is None:
            continue
        if key in merged:
            merged[key] = value
        else:
            unused.append(key)
    if unused:
        known = _all_option_names()
        unknown = [k for k in unused if k not in known]
        if unknown:
            raise QbenchError(f"unknown judge option(s) {unknown}; the {task} task takes {sorted(defaults)}")
        log.warning("qbench: warning: option(s) %s do not apply to the %s task; ignored", sorted(unused), task)
    return merged


def make_judge(task: str = "generic", graph=None, options: dict | None = None, labels: Labels | None = None) -> Judge:
    """A Judge for one task (one of TASKS, or "file.py:function" / "module:function" for a custom
    evaluator). graph: the qbench ModelGraph (output names, shapes, metadata). options: task options
    and tolerances (docs/JUDGE.md); None values mean "default". labels: from load_labels, or None."""
    task = (task or "generic").strip()
    note = ""
    if task not in TASKS:
        from qbench.judge import custom
        if ":" in task or custom.has_entry_point(task):
            return custom.make_custom_judge(task, graph, options, labels, _merge_options)
        raise QbenchError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}, give path/to/file.py:function, "
                          f"or install an evaluator entry point in the group {custom.ENTRY_POINT_GROUP!r}")
    if task == "auto":
        from qbench.judge.auto import guess_task
        task, note = guess_task(graph, labels)
        log.info("qbench: judge: %s", note)
    if graph is None:
        raise QbenchError("make_judge needs the model graph (qbench.model.ModelGraph)")
    module_name, class_name = _ADAPTERS[task]
    module = importlib.import_module(module_name)
    merged = _merge_options(task, module.DEFAULTS, options)
    want = _LABEL_KIND[task]
    if labels is not None and want != labels.kind:
        if want is None:
            raise QbenchError(f"the {task} task takes no labels, but {labels.path or 'the labels'} holds {labels.kind} labels")
        raise QbenchError(f"the {task} task needs {want} labels, but {labels.path or 'the labels'} holds {labels.kind} labels")
    accumulator = getattr(module, class_name)
    prepare = getattr(module, "prepare", None)
    if prepare is not None:  # resolve layouts, charsets, ... once per judge, not per sample
        merged = prepare(graph, merged)
    return Judge(task, graph, merged, labels, accumulator, note)


__all__ = ["TASKS", "TaskResult", "Labels", "Judge", "Accumulator", "Summary", "Evidence", "make_judge",
           "load_labels", "task_defaults"]
