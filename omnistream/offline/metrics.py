"""Detection quality as the papers report it, and as a deployment sees it.

- best F1 over all thresholds, with and without point-adjust (PA: a labelled segment counts
  as found when any of its points is flagged; random scores reach 0.7-0.97 with it);
- counts (TP/FP/FN) of given decisions, e.g. the worker's label-free threshold, which pool
  over entities by summing;
- the F1 at a threshold chosen with the labels of the first half of the test split (the
  OmniTransfer protocol), named so that nobody mistakes it for a label-free threshold.
"""

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


def f1_at_test_label_threshold(scores: np.ndarray, labels: np.ndarray, point_adjust: bool = False) -> F1Result:
    """Threshold = best F1 on the first half of the test series, with its labels; F1 measured
    on the second half. Uses test labels: not a deployable, label-free figure."""
    half = len(scores) // 2
    threshold = best_f1(scores[:half], labels[:half], point_adjust).threshold
    return f1_at(scores[half:], labels[half:], threshold, point_adjust)


@dataclass
class Counts:
    """Confusion counts of binary decisions; they add up over entities (pooled F1)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    flagged: int = 0  # points flagged (before point-adjust)
    points: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.flagged + other.flagged,
                      self.points + other.points)

    @property
    def precision(self) -> float:
        return self.tp / max(1, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return self.tp / max(1, self.tp + self.fn)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if self.tp else 0.0

    @property
    def flagged_share(self) -> float:
        return self.flagged / max(1, self.points)

    def as_dict(self) -> dict:
        return {**asdict(self), "f1": self.f1, "precision": self.precision, "recall": self.recall,
                "flagged_share": self.flagged_share}


def adjust_flags(flags: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Point-adjusted decisions: a labelled segment with any flagged point is flagged whole."""
    adjusted = np.asarray(flags, dtype=bool).copy()
    for start, end in anomaly_segments(labels):
        if adjusted[start:end].any():
            adjusted[start:end] = True
    return adjusted


def counts(flags: np.ndarray, labels: np.ndarray, point_adjust: bool = False) -> Counts:
    labels = np.asarray(labels, dtype=bool)
    flags = np.asarray(flags, dtype=bool)
    decided = adjust_flags(flags, labels) if point_adjust else flags
    return Counts(int((decided & labels).sum()), int((decided & ~labels).sum()), int((~decided & labels).sum()),
                  int(flags.sum()), len(flags))
