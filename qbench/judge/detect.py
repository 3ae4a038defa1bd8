"""detect: YOLO-family heads judged by their detections, not by their tensors.

Layouts (option ``layout``; "auto" picks by shape: the axis of 4+C or 5+C channels is the shorter
of the last two):
* ``channels_first`` [B, 4+C, N] — ultralytics YOLOv8/v11 export: boxes then class scores, no
  objectness (score = best class score);
* ``channels_last`` [B, N, 5+C] — YOLOv5/v7/YOLOX: boxes, objectness, class scores (score =
  objectness × best class score); ``objectness`` false reads [B, N, 4+C].
Boxes are ``xywh`` (centre, size; the default) or ``xyxy``, in input pixels.

Raw heads (boxes still grid offsets and log sizes, as YOLOX exports without decoding leave them,
e.g. ddddocr's detector [1, 3549, 6]) are recognised when N equals the anchor count of strides
8/16/32(/64) on the input size and the box sizes are not all positive pixel sizes. With
``strides`` they are decoded the YOLOX way: xy = (offset + grid cell) × stride,
wh = exp(log size) × stride. Without strides the head is judged by score agreement — the recall,
among anchors FP32 scores at or above the threshold, of those the candidate also scores above it
— and the note says so.

Per image: candidates above ``score_threshold``, class-wise NMS at ``nms_iou`` (at most
``max_detections``), then candidate detections are matched one-to-one to the FP32 detections of
the same class at IoU >= ``match_iou``: precision, recall, F1, mean IoU of matched boxes, worst
box shift in pixels. Pooled over images F1 = 2·TP / (FP32 detections + candidate detections);
images where neither finds anything agree and add nothing to the pool. With box labels: mAP@0.5
of FP32 and of the candidate (all-point interpolated AP per class, averaged over classes with
ground truth) and its drop.

Verdict: F1 vs FP32 >= ``min_agreement`` (bootstrap over images); with labels, mAP@0.5 drop <=
``max_drop`` (the same bootstrap, images resampled jointly for both models).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from qbench.errors import QbenchError
from qbench.judge import boxes as bx
from qbench.judge.base import Accumulator, Summary, check_shapes
from qbench.judge.heads import find_anchor_head
from qbench.judge.outputs import is_float_type, pick_output
from qbench.judge.reading import source_op
from qbench.judge.verdict import Evidence

DEFAULTS = {
    "output": None,
    "layout": "auto",            # auto | channels_first ([B,4+C,N]) | channels_last ([B,N,5+C])
    "objectness": None,          # None: True for channels_last, False for channels_first
    "box_format": "xywh",        # xywh (centre x, centre y, width, height) | xyxy
    "score_threshold": 0.25,
    "nms_iou": 0.45,
    "match_iou": 0.5,
    "max_detections": 300,
    "strides": None,             # e.g. [8, 16, 32]: decode a raw (YOLOX-style) head
    "raw": None,                 # None: recognise a raw head; True/False to force
    "min_agreement": 0.9,        # F1 of the candidate's detections against FP32's
    "max_drop": 0.02,            # mAP@0.5 drop against box labels
    # raw anchor heads (qbench.judge.heads): regressors [B, N, K] + scores [B, N, C]
    "boxes_output": None,        # None: recognised from the graph
    "scores_output": None,
    "anchors": None,             # .npy [N, 4] anchor (cx, cy, w, h), pixels or normalised to the input: decode boxes
    "variances": [0.1, 0.2],     # SSD/RetinaFace box coding: centre offsets x v0 x anchor size, log sizes x v1
    "background": None,          # scores column of the background class; None: 0 when C >= 2, none when C = 1
}

_STRIDE_SETS = ((8, 16, 32), (8, 16, 32, 64))


def prepare(graph, options: dict) -> dict:
    o = dict(options)
    o["_anchor_head"] = _anchor_head(graph, o)
    if o["_anchor_head"] is not None:
        o["output"] = o["_anchor_head"][0]
        o["layout"], o["objectness"] = "channels_last", False  # rows [4 box values, class probabilities]
        if o["anchors"] is not None:
            o["_anchors"] = _load_anchors(o["anchors"])
        try:
            o["variances"] = [float(v) for v in (o["variances"].replace(",", " ").split() if isinstance(o["variances"], str)
                                                 else o["variances"])][:2]
        except (TypeError, ValueError, AttributeError):
            raise QbenchError(f"detect: variances must be two numbers such as 0.1,0.2, not {o['variances']!r}") from None
    o["output"] = pick_output(graph, o["output"], "detect", lambda n, s, e: is_float_type(e) and s is not None and len(s) == 3)
    if o["layout"] not in ("auto", "channels_first", "channels_last"):
        raise QbenchError(f"detect: layout must be auto, channels_first or channels_last, not {o['layout']!r}")
    if o["box_format"] not in ("xywh", "xyxy"):
        raise QbenchError(f"detect: box_format must be xywh or xyxy, not {o['box_format']!r}")
    if o["strides"] is not None:
        strides = o["strides"]
        if isinstance(strides, str):
            strides = [s for s in strides.replace(",", " ").split()]
        try:
            o["strides"] = [int(s) for s in strides]
        except (TypeError, ValueError):
            raise QbenchError(f"detect: strides must be integers such as 8,16,32, not {o['strides']!r}") from None
    for key in ("score_threshold", "nms_iou", "match_iou"):
        if not 0.0 <= float(o[key]) <= 1.0:
            raise QbenchError(f"detect: {key} must lie in [0, 1], got {o[key]}")
    return o


def _anchor_head(graph, o: dict):
    """(regressors output, scores output, why) of a raw anchor head, or None for a YOLO-style head."""
    names = list(graph.output_names)
    for key in ("boxes_output", "scores_output"):
        if o[key] is not None and o[key] not in names:
            raise QbenchError(f"detect: the model has no output {o[key]!r} ({key}); its outputs are {names}")
    if o["boxes_output"] and o["scores_output"]:
        return o["boxes_output"], o["scores_output"], "boxes_output and scores_output name the anchor head"
    if o["output"] is not None or o["layout"] != "auto":
        return None  # the user named one YOLO-style head
    head = find_anchor_head(graph)
    if head is None:
        return None
    return o["boxes_output"] or head.boxes, o["scores_output"] or head.scores, head.why


def _load_anchors(path) -> np.ndarray:
    p = Path(str(path))
    if not p.is_file():
        raise QbenchError(f"detect: anchors file not found: {p}")
    try:
        a = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise QbenchError(f"detect: anchors file {p} is not a .npy array ({type(exc).__name__})") from None
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 4 or not np.isfinite(a).all():
        raise QbenchError(f"detect: anchors must be a finite [N, 4] array of (cx, cy, w, h), not shape {a.shape}")
    return a


def _input_hw(feed: dict, graph) -> tuple[int, int] | None:
    for value in feed.values():
        if np.ndim(value) == 4:
            shape = np.shape(value)
            return (shape[2], shape[3]) if shape[1] <= 4 else (shape[1], shape[2])  # NCHW, else NHWC
    for spec in graph.inputs:
        if spec.shape and len(spec.shape) == 4 and all(isinstance(d, int) and d > 0 for d in spec.shape[1:]):
            s = spec.shape
            return (s[2], s[3]) if s[1] <= 4 else (s[1], s[2])
    return None


def _grid(hw, strides):
    cells, scale = [], []
    for s in strides:
        h, w = hw[0] // s, hw[1] // s
        xv, yv = np.meshgrid(np.arange(w), np.arange(h))
        cells.append(np.stack([xv, yv], axis=2).reshape(-1, 2))
        scale.append(np.full((h * w, 1), s))
    return np.concatenate(cells).astype(np.float64), np.concatenate(scale).astype(np.float64)


class DetectAccumulator(Accumulator):
    def __init__(self, judge) -> None:
        super().__init__(judge)
        self.mode = None            # "boxes" | "scores", fixed on the first sample
        self.decode = False         # raw head decoded with strides
        self.why = ""
        self.pool = {"ref": [], "cand": []}   # per image: (scores, classes, tp) against labels
        self.gt = []                          # per image: ground-truth classes
        self.scores_are = None                # raw anchor heads: "probabilities" | "logits"
        self.background = None
        if self.options.get("_anchor_head") is not None:
            self.layout = "channels_last"
            self.mode = "boxes" if self.options.get("_anchors") is not None else "scores"

    # ---- raw anchor heads ---------------------------------------------------------------------
    def _anchor_rows(self, outputs: dict, feed: dict) -> np.ndarray:
        """A raw anchor head as rows [B, N, 4 + C'] the YOLO path reads: the four box values
        (decoded to centre/size pixels when anchors are given, else the raw regressors) and the
        class probabilities without the background column. Scores are read in probability space:
        logits go through a sigmoid (one column) or a softmax (more), as the application does."""
        boxes_name, scores_name, why = self.options["_anchor_head"]
        reg = np.asarray(outputs[boxes_name], dtype=np.float64)
        sc = np.asarray(outputs[scores_name], dtype=np.float64)
        if reg.ndim == 2:
            reg, sc = reg[None], sc.reshape(1, *sc.shape) if sc.ndim == 2 else sc
        if reg.ndim != 3 or sc.ndim != 3 or reg.shape[:2] != sc.shape[:2] or reg.shape[2] < 4:
            raise QbenchError(f"detect: anchor head {boxes_name!r} {reg.shape} and {scores_name!r} {sc.shape} are not "
                              "[B, N, K>=4] and [B, N, C] over the same anchors")
        if self.scores_are is None:  # fixed on the first FP32 sample (ref comes first)
            finite = sc[np.isfinite(sc)]
            op = source_op(self.judge.graph, scores_name)
            probs = op in ("Softmax", "Sigmoid") or (finite.size and finite.min() >= 0 and finite.max() <= 1)
            self.scores_are = "probabilities" if probs else "logits"
            bg = self.options["background"]
            self.background = (0 if sc.shape[2] >= 2 else None) if bg is None else int(bg)
            self.why = (f"raw anchor head: {why}; scores read as {self.scores_are}"
                        + ("" if probs else (" (sigmoid)" if sc.shape[2] == 1 else " (softmax)"))
                        + (f", class {self.background} is background" if self.background is not None else "")
                        + ("; boxes decoded from the anchors given (SSD coding, variances "
                           f"{self.options['variances']})" if self.options.get("_anchors") is not None else
                           "; no anchors given (option anchors): judged by matched anchors, the recall of the anchors "
                           "FP32 scores at or above the threshold"))
        if self.scores_are == "logits":
            with np.errstate(over="ignore", invalid="ignore"):
                if sc.shape[2] == 1:
                    sc = 0.5 * (1.0 + np.tanh(0.5 * sc))
                else:
                    z = np.exp(sc - np.nanmax(sc, axis=2, keepdims=True))
                    sc = z / np.sum(z, axis=2, keepdims=True)
        if self.background is not None and sc.shape[2] >= 2:
            sc = np.delete(sc, self.background, axis=2)
        box = reg[:, :, :4]
        anchors = self.options.get("_anchors")
        if anchors is not None:
            if anchors.shape[0] != reg.shape[1]:
                raise QbenchError(f"detect: the anchors file holds {anchors.shape[0]} anchors, the head {reg.shape[1]}")
            a = anchors.copy()
            if a.max() <= 2.0:  # normalised to the input: to pixels
                hw = _input_hw(feed, self.judge.graph)
                if hw is None:
                    raise QbenchError("detect: normalised anchors need the input size (a 4-D image input)")
                a *= np.array([hw[1], hw[0], hw[1], hw[0]], dtype=np.float64)
            v0, v1 = self.options["variances"]
            xy = a[None, :, 0:2] + box[:, :, 0:2] * v0 * a[None, :, 2:4]
            wh = a[None, :, 2:4] * np.exp(np.clip(box[:, :, 2:4] * v1, -20, 20))
            box = np.concatenate([xy, wh], axis=2)
        return np.concatenate([box, sc], axis=2)

    # ---- reading a head -------------------------------------------------------------------
    def _rows(self, head: np.ndarray) -> np.ndarray:
        """[B, ...] head -> [B, N, K] rows of one candidate box each."""
        h = np.asarray(head, dtype=np.float64)
        if h.ndim == 2:
            h = h[None]
        if h.ndim != 3:
            raise QbenchError(f"detect: output {self.options['output']!r} has shape {np.shape(head)}; expected [B, 4+C, N] or [B, N, 5+C]")
        layout = self.options["layout"]
        if layout == "auto":
            layout = "channels_first" if h.shape[1] < h.shape[2] else "channels_last"
        self.layout = layout
        return np.swapaxes(h, 1, 2) if layout == "channels_first" else h

    def _objectness(self) -> bool:
        obj = self.options["objectness"]
        return (self.layout == "channels_last") if obj is None else bool(obj)

    def _scores(self, rows: np.ndarray):
        """(score, class) of every row."""
        first = 5 if self._objectness() else 4
        cls = rows[:, first:]
        if cls.shape[1] == 0:
            best, label = np.ones(rows.shape[0]), np.zeros(rows.shape[0], dtype=np.int64)
        else:
            label = np.argmax(np.nan_to_num(cls, nan=-np.inf), axis=1)
            best = cls[np.arange(rows.shape[0]), label]
        score = best * rows[:, 4] if first == 5 else best
        return np.nan_to_num(score, nan=0.0, posinf=0.0, neginf=0.0), label

    def _decide_mode(self, rows: np.ndarray, feed: dict) -> None:
        o = self.options
        hw = _input_hw(feed, self.judge.graph)
        n = rows.shape[0]
        grid_match = hw is not None and any(sum((hw[0] // s) * (hw[1] // s) for s in ss) == n for ss in _STRIDE_SETS)
        wh = rows[:, 2:4] if o["box_format"] == "xywh" else rows[:, 2:4] - rows[:, 0:2]
        raw = o["raw"]
        if raw is None:
            raw = bool(grid_match and (np.min(wh) < 0 or np.max(np.abs(rows[:, :4])) < 8))
        self.hw = hw
        if raw and o["strides"]:
            if hw is None:
                raise QbenchError("detect: decoding a raw head with strides needs the input size (a 4-D image input)")
            if sum((hw[0] // s) * (hw[1] // s) for s in o["strides"]) != n:
                raise QbenchError(f"detect: strides {o['strides']} on a {hw[0]}x{hw[1]} input give "
                                  f"{sum((hw[0] // s) * (hw[1] // s) for s in o['strides'])} anchors, the head has {n}")
            self.grid, self.stride = _grid(hw, o["strides"])
            self.decode = True
            self.mode, self.why = "boxes", f"raw head decoded with strides {o['strides']} (YOLOX: (xy+cell)·stride, exp(wh)·stride)"
        elif raw:
            self.mode = "scores"
            self.why = ("raw head (boxes are grid offsets, not pixels) and no strides given: judged by score agreement "
                        "(recall of FP32's above-threshold anchors), not by boxes; give strides (e.g. 8,16,32) to decode")
        else:
            self.mode = "boxes"

    def _detections(self, rows: np.ndarray):
        o = self.options
        score, label = self._scores(rows)
        keep = np.flatnonzero(score >= float(o["score_threshold"]))
        b = rows[keep, :4]
        if self.decode:
            xy = (b[:, 0:2] + self.grid[keep]) * self.stride[keep]
            wh = np.exp(np.clip(b[:, 2:4], -20, 20)) * self.stride[keep]
            b = np.concatenate([xy, wh], axis=1)
        b = bx.xywh_to_xyxy(b) if o["box_format"] == "xywh" or self.decode else b
        ok = np.all(np.isfinite(b), axis=1)
        b, s, c = b[ok], score[keep][ok], label[keep][ok]
        kept = bx.nms(b, s, c, float(o["nms_iou"]), int(o["max_detections"]))
        return b[kept], s[kept], c[kept]

    def detections(self, head, feed: dict) -> list | None:
        """What this judge detects in one output (for drawing): per batch row (xyxy boxes in input
        pixels, scores, classes), after threshold and NMS; None when a raw head without strides is
        judged by score agreement (no boxes exist). An anchor head needs all outputs (a dict)."""
        if self.options.get("_anchor_head") is not None:
            if not isinstance(head, dict) or self.mode != "boxes":
                return None
            return [self._detections(r) for r in self._anchor_rows(head, feed)]
        rows = self._rows(head)
        if self.mode is None:
            self._decide_mode(rows[0], feed)
        if self.mode != "boxes":
            return None
        return [self._detections(r) for r in rows]

    # ---- per sample -----------------------------------------------------------------------
    def measure(self, index, name, ref, cand, feed, label) -> dict:
        out = self.options["output"]
        check_shapes("detect", out, ref[out], cand[out])
        if self.options.get("_anchor_head") is not None:
            scores_name = self.options["_anchor_head"][1]
            check_shapes("detect", scores_name, ref[scores_name], cand[scores_name])
            r_all, c_all = self._anchor_rows(ref, feed), self._anchor_rows(cand, feed)
        else:
            r_all, c_all = self._rows(ref[out]), self._rows(cand[out])
        if self.mode is None:
            self._decide_mode(r_all[0], feed)
        if label is not None and r_all.shape[0] != 1:
            raise QbenchError(f"detect: sample {name!r} holds {r_all.shape[0]} images but one box list; use batch size 1 with labels")
        row = {"fp32_dets": 0, "cand_dets": 0, "tp": 0, "iou_sum": 0.0, "max_shift_px": 0.0}
        thr = float(self.options["score_threshold"])
        for r, c in zip(r_all, c_all):
            if self.mode == "scores":
                rs, _ = self._scores(r)
                cs, _ = self._scores(c)
                above = rs >= thr
                row["fp32_dets"] += int(above.sum())
                row["cand_dets"] += int((cs >= thr).sum())
                row["tp"] += int((above & (cs >= thr)).sum())
                continue
            rb, rsc, rc = self._detections(r)
            cb, csc, cc = self._detections(c)
            ri, ci, ious = bx.match(rb, rc, cb, cc, float(self.options["match_iou"]))
            row["fp32_dets"] += len(rb)
            row["cand_dets"] += len(cb)
            row["tp"] += len(ri)
            row["iou_sum"] += float(ious.sum())
            if len(ri):
                row["max_shift_px"] = max(row["max_shift_px"], float(np.max(np.abs(rb[ri] - cb[ci]))))
            if label is not None:
                gt = np.asarray(label, dtype=np.float64).reshape(-1, 5)
                for key, (b, s, k) in (("ref", (rb, rsc, rc)), ("cand", (cb, csc, cc))):
                    tp = bx.true_positives(b, s, k, gt[:, :4], gt[:, 4].astype(np.int64), float(self.options["match_iou"]))
                    self.pool[key].append((s, k, tp))
                self.gt.append(gt[:, 4].astype(np.int64))
        tp, nr, nc = row["tp"], row["fp32_dets"], row["cand_dets"]
        row["precision"] = tp / nc if nc else (1.0 if nr == 0 else 0.0)
        row["recall"] = tp / nr if nr else 1.0
        row["f1"] = 2 * tp / (nr + nc) if nr + nc else 1.0
        if self.mode == "scores":
            for k in ("iou_sum", "max_shift_px"):
                row.pop(k)
        else:
            iou_sum = row.pop("iou_sum")
            row["mean_iou"] = iou_sum / tp if tp else float("nan")
        return row

    # ---- over samples ---------------------------------------------------------------------
    def summarise(self, frame: pd.DataFrame) -> Summary:
        notes = [self.why] if self.why else []
        n = len(frame)
        if n == 0:
            return Summary({}, "f1_vs_fp32", "detection F1 vs FP32", float("nan"), float(self.options["min_agreement"]),
                           "min_agreement", True, Evidence("point"), notes)
        tp, nr, nc = (float(frame[k].sum()) for k in ("tp", "fp32_dets", "cand_dets"))
        metrics = {"fp32_detections": int(nr), "candidate_detections": int(nc), "matched": int(tp)}
        common = dict(rank_column="recall" if self.mode == "scores" else "f1", rank_higher_is_better=True)
        if self.mode == "scores":
            recall = tp / nr if nr else 1.0
            metrics.update(score_recall_vs_fp32=recall, score_precision_vs_fp32=tp / nc if nc else 1.0)
            ev = Evidence("ratio", num=tuple(frame["tp"]), den=tuple(frame["fp32_dets"]), n=n, counts=True) if nr else Evidence("point")
            if not nr:
                notes.append("FP32 scores no anchor above the threshold: nothing to agree on")
            return Summary(metrics, "score_recall_vs_fp32", f"score agreement (recall of FP32 anchors >= {self.options['score_threshold']:g})",
                           recall, float(self.options["min_agreement"]), "min_agreement", True, ev, notes, **common)
        f1 = 2 * tp / (nr + nc) if nr + nc else 1.0
        metrics.update(precision_vs_fp32=tp / nc if nc else (1.0 if nr == 0 else 0.0), recall_vs_fp32=tp / nr if nr else 1.0,
                       f1_vs_fp32=f1, mean_iou=float(np.nansum(frame["mean_iou"] * frame["tp"]) / tp) if tp else float("nan"),
                       max_box_shift_px=float(frame["max_shift_px"].max()))
        if nr + nc == 0:
            notes.append(f"neither FP32 nor the candidate detects anything above score {self.options['score_threshold']:g}")
        ev = (Evidence("ratio", num=tuple(2 * frame["tp"]), den=tuple(frame["fp32_dets"] + frame["cand_dets"]), n=n, counts=True)
              if nr + nc else Evidence("point"))
        if self.judge.labels is None or not self.gt:
            return Summary(metrics, "f1_vs_fp32", "detection F1 vs FP32", f1, float(self.options["min_agreement"]),
                           "min_agreement", True, ev, notes, **common)
        return self._with_labels(metrics, notes, common)

    def _with_labels(self, metrics, notes, common) -> Summary:
        n_img = len(self.gt)
        classes = sorted(set(np.concatenate(self.gt).tolist())) if n_img else []
        gt_counts = {k: np.array([np.sum(g == k) for g in self.gt]) for k in classes}

        def pooled(key):
            s = [p[0] for p in self.pool[key]]
            k = [p[1] for p in self.pool[key]]
            t = [p[2] for p in self.pool[key]]
            img = [np.full(len(x), i) for i, x in enumerate(s)]
            cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)
            return cat(s, np.float64), cat(k, np.int64), cat(t, bool), cat(img, np.int64)

        ref, cand = pooled("ref"), pooled("cand")
        map_ref = float(bx.mean_average_precision(*ref, gt_counts)[0])
        map_cand = float(bx.mean_average_precision(*cand, gt_counts)[0])
        drop = map_ref - map_cand
        metrics.update(fp32_map50=map_ref, map50=map_cand, map50_drop=drop)
        if not classes:
            notes.append("the labels hold no boxes: mAP is undefined")
            return Summary(metrics, "map50_drop", "mAP@0.5 drop vs FP32 (labels)", float("nan"),
                           float(self.options["max_drop"]), "max_drop", False, Evidence("point"), notes, **common)
        interval = None
        if n_img >= 2:
            weights = np.random.default_rng(0).multinomial(n_img, np.full(n_img, 1.0 / n_img), size=500)
            diffs = bx.mean_average_precision(*ref, gt_counts, weights) - bx.mean_average_precision(*cand, gt_counts, weights)
            diffs = diffs[np.isfinite(diffs)]
            if diffs.size:
                interval = tuple(float(v) for v in np.quantile(diffs, [0.025, 0.975]))
        # the units are the ground-truth boxes: those FP32 finds and the candidate does not, and the
        # other way round, per image (a recall difference over boxes bounds how little 8 identical
        # images can show about the mAP drop)
        tp_ref = np.array([int(p[2].sum()) for p in self.pool["ref"]])
        tp_cand = np.array([int(p[2].sum()) for p in self.pool["cand"]])
        gt_boxes = float(sum(len(g) for g in self.gt))
        ev = Evidence("interval", n=n_img, interval=interval,
                      unit_changes=(float(np.clip(tp_ref - tp_cand, 0, None).sum()), float(np.clip(tp_cand - tp_ref, 0, None).sum()), gt_boxes))
        return Summary(metrics, "map50_drop", "mAP@0.5 drop vs FP32 (labels)", drop, float(self.options["max_drop"]),
                       "max_drop", False, ev, notes, **common)
