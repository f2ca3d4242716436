"""Detection quality as the papers report it: best F1 over all thresholds, with and without
point-adjust (PA), and validation-threshold F1 (threshold picked on the first half of the
test series, applied to the second half)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class F1Result:
    f1: float
    precision: float
    recall: float
    threshold: float

    def as_dict(self) -> dict:
        return asdict(self)


def anomaly_segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of 1s in the labels."""
    padded = np.concatenate([[0], np.asarray(labels, dtype=np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def point_adjust_scores(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Scores where every labelled segment takes its maximum: thresholding these equals PA."""
    adjusted = np.asarray(scores, dtype=np.float64).copy()
    for start, end in anomaly_segments(labels):
        adjusted[start:end] = adjusted[start:end].max()
    return adjusted


def best_f1(scores: np.ndarray, labels: np.ndarray, point_adjust: bool = False) -> F1Result:
    """Best F1 over every threshold (a point is anomalous when score >= threshold)."""
    labels = np.asarray(labels, dtype=bool)
    scores = point_adjust_scores(scores, labels) if point_adjust else np.asarray(scores, dtype=np.float64)
    if not labels.any():
        return F1Result(0.0, 0.0, 0.0, float("inf"))
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last_of_value = np.r_[s[1:] != s[:-1], True]  # thresholds sit on distinct values
    tp, fp, thresholds = tp[last_of_value], fp[last_of_value], s[last_of_value]
    precision = tp / (tp + fp)
    recall = tp / labels.sum()
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    i = int(f1.argmax())
    return F1Result(float(f1[i]), float(precision[i]), float(recall[i]), float(thresholds[i]))


def f1_at(scores: np.ndarray, labels: np.ndarray, threshold: float, point_adjust: bool = False) -> F1Result:
    """F1 at a fixed threshold."""
    labels = np.asarray(labels, dtype=bool)
    scores = point_adjust_scores(scores, labels) if point_adjust else np.asarray(scores)
    pred = scores >= threshold
    tp = int((pred & labels).sum())
    precision = tp / max(1, int(pred.sum()))
    recall = tp / max(1, int(labels.sum()))
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return F1Result(f1, precision, recall, float(threshold))


def validation_threshold_f1(scores: np.ndarray, labels: np.ndarray, point_adjust: bool = False) -> F1Result:
    """Threshold = best F1 on the first half of the series; F1 measured on the second half."""
    half = len(scores) // 2
    threshold = best_f1(scores[:half], labels[:half], point_adjust).threshold
    return f1_at(scores[half:], labels[half:], threshold, point_adjust)
