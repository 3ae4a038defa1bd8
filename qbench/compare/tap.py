"""The comparator's outputs tap: per sample, the graph outputs of the reference and the candidate
(plus the feed and the sample's name) go to a task judge's accumulator before the comparator frees
the arrays, and a small picture of the sample is kept for the report's per-sample section.

Why here and not as a second pass: the judge reads the very outputs the comparison already
computed, so task evaluation costs no extra model run (benchmarks/bench_judge.py measures it). The
accumulator runs on the comparator's fold thread, in sample order, overlapping the next sample's
model runs.

Kept pictures are bounded: the input as a small uint8 thumbnail and each output as given, or
strided down when it is a large spatial map, until ``KEEP_BYTES`` are held; the report needs only
the worst few (chosen once the task result is known), and the comparator re-runs just those that
were not kept (``comparator._pictures``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qbench.compare.marks import marks

# Bytes of pictures kept during the pass; samples beyond it are re-run if they turn out worst.
KEEP_BYTES = 48 * 2**20
# Longest side of a kept input thumbnail and of a kept spatial output map, in pixels.
THUMB_SIDE = 256
# Outputs larger than this (elements) and not spatial maps are not kept for pictures.
MAX_OUTPUT_ELEMENTS = 2_000_000


@dataclass
class SamplePicture:
    """What the report draws for one sample: the input as an RGB (or gray) uint8 image when the
    input looks like an image, the outputs of both sides, and the (height, width) of the model
    input, so boxes in input pixels can be scaled onto the thumbnail."""

    index: int
    name: str
    image: np.ndarray | None  # H x W x 3 (or H x W) uint8, or None for non-image inputs
    input_hw: tuple[int, int] | None
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    candidate: dict[str, np.ndarray] = field(default_factory=dict)
    # what the judge saw, drawable (qbench.compare.marks); filled for the pictures the report shows
    reference_marks: dict = field(default_factory=dict)
    candidate_marks: dict = field(default_factory=dict)


def image_of(feed: dict, channel_order: str = "RGB") -> tuple[np.ndarray | None, tuple[int, int] | None]:
    """The first image-like input (N x C x H x W or N x H x W x C, C in 1/3, H, W >= 16) as a
    uint8 thumbnail, scaled by its own min/max (the model's normalisation is not known here)."""
    for arr in feed.values():
        a = np.asarray(arr)
        if a.ndim != 4 or not np.issubdtype(a.dtype, np.number):
            continue
        x = a[0]
        if x.shape[0] in (1, 3) and min(x.shape[1:]) >= 16:
            x = np.moveaxis(x, 0, -1)
        elif not (x.shape[-1] in (1, 3) and min(x.shape[:2]) >= 16):
            continue
        hw = (int(x.shape[0]), int(x.shape[1]))
        step = max(1, int(np.ceil(max(hw) / THUMB_SIDE)))
        x = np.asarray(x[::step, ::step], dtype=np.float32)
        finite = np.isfinite(x)
        lo, hi = (float(x[finite].min()), float(x[finite].max())) if finite.any() else (0.0, 1.0)
        img = np.clip((np.where(finite, x, lo) - lo) / (hi - lo if hi > lo else 1.0) * 255.0, 0, 255).astype(np.uint8)
        if img.shape[-1] == 3 and channel_order.upper() == "BGR":
            img = img[..., ::-1]
        return (img[..., 0] if img.shape[-1] == 1 else np.ascontiguousarray(img)), hw
    return None, None


def _is_map(shape: tuple) -> bool:
    """A spatial map (N x H x W or N x C x H x W) rather than a detection head [1, 84, 8400]: both
    last axes >= 16 and not wildly elongated."""
    if len(shape) < 3:
        return False
    h, w = shape[-2:]
    return min(h, w) >= 16 and max(h, w) <= 8 * min(h, w)


def _small(arr: np.ndarray) -> np.ndarray | None:
    """An output kept for drawing: spatial maps strided to THUMB_SIDE, other outputs as they are
    when small enough (a detection head must stay whole to be decoded)."""
    a = np.asarray(arr)
    if _is_map(a.shape) and max(a.shape[-2:]) > THUMB_SIDE:
        step = int(np.ceil(max(a.shape[-2:]) / THUMB_SIDE))
        return np.array(a[..., ::step, ::step])
    return np.array(a) if a.size <= MAX_OUTPUT_ELEMENTS else None


class OutputsTap:
    """One per comparison: ``take`` (main thread) picks the output arrays out of a sample's
    captures; ``add`` (fold thread) hands them to the accumulator and keeps the picture."""

    def __init__(self, judge, output_names, channel_order: str = "RGB", keep_bytes: int | None = None):
        self.judge = judge
        self.acc = judge.start()
        self.output_names = list(output_names)
        self.channel_order = channel_order
        self.keep_bytes = KEEP_BYTES if keep_bytes is None else keep_bytes
        self.kept_bytes = 0
        self.pictures: dict[int, SamplePicture] = {}
        self.names: dict[int, str] = {}
        self.seconds = 0.0
        # why there is no task result (candidate results without the model's outputs), or ""
        self.unjudged = ""

    def take(self, values: dict) -> dict:
        return {n: values[n] for n in self.output_names if n in values}

    def add(self, index: int, name: str, ref_out: dict, cand_out: dict, feed: dict) -> None:
        import time

        if self.unjudged:
            return
        missing = [n for n in self.output_names if n not in cand_out]
        if missing:
            # e.g. TensorRT results exported without the model outputs: nothing for the judge to read,
            # and judging the other samples only would be a verdict over a subset
            self.unjudged = (f"no task verdict: the candidate's results lack model output(s) {missing[:3]} "
                             f"(sample {index}); the verdict falls back to the output tensors compared")
            return
        t0 = time.perf_counter()
        self.acc.add(index, name, ref_out, cand_out, feed)
        self.names[index] = name
        if self.kept_bytes < self.keep_bytes:
            pic = self.picture(index, name, ref_out, cand_out, feed)
            self.pictures[index] = pic
            self.kept_bytes += _nbytes(pic)
        self.seconds += time.perf_counter() - t0

    def picture(self, index: int, name: str, ref_out: dict, cand_out: dict, feed: dict) -> SamplePicture:
        image, hw = image_of(feed, self.channel_order)
        ref = {k: v for k, v in ((k, _small(v)) for k, v in ref_out.items()) if v is not None}
        cand = {k: v for k, v in ((k, _small(v)) for k, v in cand_out.items()) if v is not None}
        return SamplePicture(index, name, image, hw, ref, cand)

    def finish(self, worst: int = 4):
        """(TaskResult, the indices of the worst samples to picture, worst first); (None, []) when
        the candidate could not be judged (``unjudged`` says why)."""
        if self.unjudged:
            self.pictures = {}
            return None, []
        result = self.acc.finish()
        wanted = worst_indices(result, worst)
        return result, wanted

    def keep_only(self, indices) -> list[SamplePicture]:
        """The pictures of ``indices``, marked with what the judge saw; every other one is dropped."""
        kept = [self.pictures[i] for i in indices if i in self.pictures]
        self.pictures = {}
        for pic in kept:
            feed = {"image": np.broadcast_to(np.float32(0), (1, 3, *pic.input_hw))} if pic.input_hw else {}
            pic.reference_marks = marks(pic.reference, self.judge, feed)
            pic.candidate_marks = marks(pic.candidate, self.judge, feed)
            pic.reference, pic.candidate = {}, {}  # the marks are all the report reads
        return kept


def _nbytes(pic: SamplePicture) -> int:
    arrays = [pic.image] if pic.image is not None else []
    arrays += list(pic.reference.values()) + list(pic.candidate.values())
    return sum(a.nbytes for a in arrays)


def worst_indices(result, k: int) -> list[int]:
    """Sample indices of the k worst rows by the task's primary metric (the judge decides what
    "worst" means through ``TaskResult.worst``)."""
    rows = result.worst(k)
    if rows is None or len(rows) == 0 or "sample" not in rows:
        return []
    return [int(s) for s in rows["sample"].tolist()]
