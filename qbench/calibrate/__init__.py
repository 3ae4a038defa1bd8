"""Calibration: per-tensor INT8 ranges from representative data, computed on the CPU the way
TensorRT's calibrators compute them, streamed one batch at a time.

``calibrate(model, data, method="entropy")`` returns a ``qbench.ranges.Ranges``;
``calibrate_many(graph, data, methods=METHODS)`` returns one per method from ONE activation pass.
Write a result with ``.write_trt_cache(path)`` (plus its provenance sidecar) or ``.write_json(path)``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qbench import provenance
from qbench.calibrate.batching import DEFAULT_MEMORY_BUDGET, auto_batch_size
from qbench.calibrate.collector import HistogramCollector, calibration_tensors, collect, late_reallocations
from qbench.calibrate.entropy import VARIANTS, entropy_amax, entropy_divergences
from qbench.calibrate.histogram import GROWTH, MAX_BINS, NUM_BINS, TensorHistogram
from qbench.calibrate.methods import (DEFAULT_PERCENTILE, DEFAULT_QUANTILE, DEFAULT_REGRESSION_CUTOFF, METHODS,
                                      TRT_ALGORITHM, amax_for, check_legacy, check_method, check_percentile,
                                      check_variant, legacy_amax, method_label, mse_amax, percentile_amax)
from qbench.cpu import cpu_threads
from qbench.data import Dataset, load_dataset
from qbench.errors import QbenchError
from qbench.model import ModelGraph
from qbench.ranges import DEFAULT_TRT_VERSION, Ranges, TensorRange

log = logging.getLogger("qbench")

__all__ = [
    "calibrate", "calibrate_many", "ranges_from_histograms", "collect", "calibration_tensors", "HistogramCollector",
    "TensorHistogram", "entropy_amax", "entropy_divergences", "percentile_amax", "legacy_amax", "mse_amax", "amax_for",
    "auto_batch_size", "METHODS", "GROWTH", "VARIANTS", "TRT_ALGORITHM", "NUM_BINS", "MAX_BINS",
]


def calibrate(model: str | Path | ModelGraph, data, *, method: str = "entropy", batch_size: int | None = None,
              limit: int | None = None, percentile: float = DEFAULT_PERCENTILE, num_bins: int = NUM_BINS,
              max_bins: int = MAX_BINS, threads: int | None = None, progress: bool = True,
              trt_version: str = DEFAULT_TRT_VERSION, growth: str = "double", entropy_variant: str = "modelopt",
              quantile: float = DEFAULT_QUANTILE, regression_cutoff: float = DEFAULT_REGRESSION_CUTOFF,
              memory_budget: int | None = None) -> Ranges:
    """Ranges for every float tensor of ``model`` from the samples in ``data``, by one ``method``.

    ``data``: a data folder (images + manifest.json, or .npy/.npz), a ``qbench.data.Dataset``, or an
    iterable of ``{input name: batch array}`` feeds (then ``batch_size``/``limit`` do not apply).
    ``batch_size``: TensorRT's calibration batch (``getBatchSize``); None = the largest that fits
    ``memory_budget`` (``auto_batch_size``). ``growth``: ``"double"`` (TensorRT) or ``"append"``
    (the bin-appending reproduction). ``entropy_variant``: ``"modelopt"`` or ``"gtc"``.
    """
    check_method(method)
    return calibrate_many(model, data, methods=(method,), batch_size=batch_size, limit=limit, percentile=percentile,
                          num_bins=num_bins, max_bins=max_bins, threads=threads, progress=progress,
                          trt_version=trt_version, growth=growth, entropy_variant=entropy_variant, quantile=quantile,
                          regression_cutoff=regression_cutoff, memory_budget=memory_budget)[method]


def calibrate_many(graph: str | Path | ModelGraph, dataset, methods=METHODS, batch_size: int | None = None,
                   limit: int | None = None, progress: bool = True, *, percentile: float = DEFAULT_PERCENTILE,
                   num_bins: int = NUM_BINS, max_bins: int = MAX_BINS, threads: int | None = None,
                   trt_version: str = DEFAULT_TRT_VERSION, growth: str = "double", entropy_variant: str = "modelopt",
                   quantile: float = DEFAULT_QUANTILE, regression_cutoff: float = DEFAULT_REGRESSION_CUTOFF,
                   memory_budget: int | None = None) -> dict[str, Ranges]:
    """{method: Ranges} for every method in ``methods``, all from ONE ONNX Runtime pass: the histograms
    and exact statistics are collected once and every calibrator reads them."""
    methods = tuple(methods)
    if not methods:
        raise QbenchError("no calibration method given")
    for m in methods:
        check_method(m)
    if "percentile" in methods:
        check_percentile(percentile)
    if "legacy" in methods:
        check_legacy(quantile, regression_cutoff)
    check_variant(entropy_variant)
    if growth not in GROWTH:
        raise QbenchError(f"unknown histogram growth {growth!r}; choose one of {', '.join(GROWTH)}")
    if batch_size is not None and batch_size < 1:
        raise QbenchError(f"batch size must be at least 1, not {batch_size}")
    graph = graph if isinstance(graph, ModelGraph) else ModelGraph.from_path(graph)
    batches, total, dataset, chosen = _batches(graph, dataset, batch_size, limit, memory_budget)
    collector = collect(graph, batches, num_bins=num_bins, max_bins=max_bins, threads=threads,
                        progress=progress, total=total, growth=growth)
    notes = _late_reallocation_notes(collector)
    for note in notes:
        log.warning("qbench: warning: %s", note)
    provenance = _provenance(graph, dataset, chosen, collector, growth, entropy_variant, trt_version, limit)
    summaries = {name: hist.summary() for name, hist in collector.histograms.items() if hist.batches}
    out = {}
    for method in methods:
        ranges = ranges_from_histograms(collector.histograms, method, percentile=percentile, trt_version=trt_version,
                                        entropy_variant=entropy_variant, quantile=quantile,
                                        regression_cutoff=regression_cutoff, summaries=summaries)
        ranges.model = graph.digest
        ranges.notes = list(notes)
        ranges.provenance = {**provenance, "calibrator": ranges.header.split("-", 2)[-1], "method": ranges.method,
                             **({"percentile": percentile} if method == "percentile" else {}),
                             **({"quantile": quantile, "regression_cutoff": regression_cutoff} if method == "legacy" else {})}
        out[method] = ranges
    return out


def ranges_from_histograms(histograms: dict[str, TensorHistogram], method: str, *,
                           percentile: float = DEFAULT_PERCENTILE, trt_version: str = DEFAULT_TRT_VERSION,
                           entropy_variant: str = "modelopt", quantile: float = DEFAULT_QUANTILE,
                           regression_cutoff: float = DEFAULT_REGRESSION_CUTOFF, summaries: dict | None = None) -> Ranges:
    """One method's ranges from collected histograms; ``summaries`` (name -> ``hist.summary()``) lets
    several methods share one computation of them."""
    check_method(method)
    label = method_label(method, percentile, entropy_variant)
    seen = {name: hist for name, hist in histograms.items() if hist.batches}  # others were never produced

    def one(hist):
        return amax_for(hist, method, percentile, entropy_variant=entropy_variant, quantile=quantile,
                        regression_cutoff=regression_cutoff)

    if method == "entropy" and len(seen) > 1:
        # the KL search is a numba kernel that releases the GIL: tensors in parallel threads
        with ThreadPoolExecutor(max_workers=cpu_threads()) as pool:
            amaxes = dict(zip(seen, pool.map(one, seen.values())))
    else:
        amaxes = {name: one(hist) for name, hist in seen.items()}
    entries = {}
    for name, hist in seen.items():
        amax = amaxes[name]
        entries[name] = TensorRange(name, amax, method=label, samples=hist.samples,
                                    observed_min=hist.minimum if hist.total else None,
                                    observed_max=hist.maximum if hist.total else None,
                                    summary=dict(summaries[name]) if summaries and name in summaries else hist.summary())
    return Ranges(entries, method=label, header=f"TRT-{trt_version}-{TRT_ALGORITHM[method]}")


def _late_reallocation_notes(collector: HistogramCollector) -> list[str]:
    late = late_reallocations(collector.histograms, collector.batches)
    if not late:
        return []
    name, hits = next(iter(late.items()))
    return [f"{len(late)} tensor(s) had their histogram range doubled in the last quarter of the "
            f"{collector.batches} calibration batches (e.g. {name!r} at batch {hits[-1]}): their values now "
            "fill at most half the bins, and TensorRT's ranges depend on batch order; calibrate with one "
            "larger batch (--batch-size) or shuffle the data"]


def _provenance(graph: ModelGraph, dataset, batch_size, collector, growth, variant, trt_version, limit) -> dict:
    return {
        "model": graph.name, "model_digest": graph.digest,
        "data": str(dataset.root) if dataset is not None else None,
        "data_digest": provenance.data_digest(dataset, limit) if dataset is not None else None,
        "batch_size": batch_size, "batches": collector.batches, "samples": collector.samples,
        "histogram": {"bins": next((h.num_bins for h in collector.histograms.values()), NUM_BINS), "growth": growth},
        "entropy_variant": variant, "trt_version": str(trt_version), "versions": provenance.versions(),
    }


def _batches(graph: ModelGraph, data, batch_size: int | None, limit: int | None, memory_budget: int | None):
    """(batches, sample total, the Dataset or None, the batch size used or None for given feeds)."""
    if isinstance(data, (str, Path)):
        data = load_dataset(data, graph.inputs)
    if isinstance(data, Dataset):
        total = len(data) if limit is None else min(limit, len(data))
        if batch_size is None:
            batch_size = auto_batch_size(graph, data, limit=limit, budget=memory_budget or DEFAULT_MEMORY_BUDGET)
        return data.batches(batch_size, limit), total, data, batch_size
    if isinstance(data, dict) and all(isinstance(v, np.ndarray) for v in data.values()):
        return [data], None, None, None
    return iter(data), None, None, None
