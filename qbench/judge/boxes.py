"""Box geometry for the detect adapter, vectorised with numpy: conversions, pairwise IoU,
class-wise non-maximum suppression, greedy matching and average precision."""

from __future__ import annotations

import numpy as np


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2.0
    return np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [N, 4] with every box in b [M, 4] (xyxy) -> [N, M]."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:4] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:4] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, max_keep: int) -> np.ndarray:
    """Class-wise greedy NMS: indices kept, best score first. Boxes of different classes never
    suppress each other (each class is shifted into its own coordinate region, the usual trick
    that turns class-wise NMS into one pass)."""
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    span = float(np.max(np.abs(boxes))) * 2 + 1
    shifted = boxes + (classes.astype(np.float64) * span)[:, None]
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size and len(keep) < max_keep:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        overlap = iou_matrix(shifted[i:i + 1], shifted[rest])[0]
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def match(ref_boxes, ref_classes, cand_boxes, cand_classes, iou_threshold: float):
    """Greedy one-to-one matching of same-class boxes, highest IoU first, IoU >= threshold.
    Returns (ref indices, cand indices, IoUs) of the matched pairs."""
    ious = iou_matrix(ref_boxes, cand_boxes)
    if ious.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    ious = np.where(ref_classes[:, None] == cand_classes[None, :], ious, 0.0)
    r_idx, c_idx = np.nonzero(ious >= iou_threshold)
    order = np.argsort(-ious[r_idx, c_idx], kind="stable")
    used_r, used_c, pairs = set(), set(), []
    for k in order:
        r, c = int(r_idx[k]), int(c_idx[k])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    if not pairs:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    rs, cs = (np.asarray(x, dtype=np.int64) for x in zip(*pairs))
    return rs, cs, ious[rs, cs]


def true_positives(det_boxes, det_scores, det_classes, gt_boxes, gt_classes, iou_threshold: float) -> np.ndarray:
    """PASCAL VOC rule for one image: detections in descending score order each claim the unclaimed
    ground-truth box of their class with the highest IoU >= threshold; the rest are false positives."""
    tp = np.zeros(det_boxes.shape[0], dtype=bool)
    if det_boxes.shape[0] == 0 or gt_boxes.shape[0] == 0:
        return tp
    ious = iou_matrix(det_boxes, gt_boxes)
    ious = np.where(det_classes[:, None] == gt_classes[None, :], ious, 0.0)
    claimed = np.zeros(gt_boxes.shape[0], dtype=bool)
    for d in np.argsort(-det_scores, kind="stable"):
        row = np.where(claimed, -1.0, ious[d])
        g = int(np.argmax(row))
        if row[g] >= iou_threshold:
            tp[d] = True
            claimed[g] = True
    return tp


def mean_average_precision(scores, classes, tp, image, gt_counts: dict, weights: np.ndarray | None = None) -> np.ndarray:
    """mAP over classes with ground truth, all-point interpolated AP (the area under the precision
    envelope, as PASCAL VOC since 2010 and COCO's AP@0.5 per class). Detections of all images are
    pooled: scores, classes, tp flags and image ids per detection; gt_counts: class -> array of
    ground-truth counts per image. weights [B, n_images] evaluates B reweighted data sets at once
    (a bootstrap draws image multiplicities); returns [B] (or [1] without weights)."""
    n_images = len(next(iter(gt_counts.values()))) if gt_counts else 0
    w = np.ones((1, n_images)) if weights is None else np.asarray(weights, dtype=np.float64)
    aps = []
    for cls, counts in gt_counts.items():
        n_gt = w @ np.asarray(counts, dtype=np.float64)  # [B]
        sel = np.flatnonzero(classes == cls)
        if sel.size == 0:
            aps.append(np.where(n_gt > 0, 0.0, np.nan))
            continue
        order = sel[np.argsort(-scores[sel], kind="stable")]
        dw = w[:, image[order]]                                   # [B, D] weight of each detection
        ctp = np.cumsum(dw * tp[order][None, :], axis=1)
        cfp = np.cumsum(dw * (~tp[order])[None, :], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = ctp / n_gt[:, None]
            precision = ctp / np.maximum(ctp + cfp, 1e-12)
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        steps = np.diff(np.concatenate([np.zeros((recall.shape[0], 1)), recall], axis=1), axis=1)
        ap = np.sum(steps * envelope, axis=1)
        aps.append(np.where(n_gt > 0, ap, np.nan))
    if not aps:
        return np.full(w.shape[0], np.nan)
    stacked = np.vstack(aps)
    valid = ~np.isnan(stacked)
    count = valid.sum(axis=0)
    total = np.where(valid, stacked, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
