"""Up-front checks of each entity's data, so that a run never dies on one entity: what training
or scoring would reject, found before any work and with the message training gives, and what
they would silently accept and turn into a flood of alerts (a train split with nothing to learn
from). Each entity that fails is left out with its reason; the others go on."""

from __future__ import annotations

import numpy as np

from omnistream.offline.datasets import DataError, EntitySeries, LeftOut

MIN_CALIBRATION_POINTS = 50  # fewest held-out scores POT may set a threshold from


def cumulative_counters(train: np.ndarray, min_steps: int = 50) -> np.ndarray:
    """Metrics (M,) bool of a training series (T, M) that look like cumulative counters: at
    least ``min_steps`` observed steps, none of them down and most of them up. Their level only
    grows, so every later point lies beyond anything training saw; they are scored as missing,
    and the fit says so (send their rate instead)."""
    steps = np.diff(train, axis=0)
    observed = np.isfinite(steps)
    count = observed.sum(axis=0)
    down = (observed & (steps < 0)).sum(axis=0)
    up = (observed & (steps > 0)).sum(axis=0)
    return (count >= min_steps) & (down == 0) & (up >= count / 2)


def history_split(points: int, window: int, fraction: float) -> int:
    """Where a history of ``points`` splits into training and its newest ``fraction`` held out
    to calibrate on; DataError when either part is too short (the rule training applies)."""
    split = int(points * (1 - fraction))
    if split < window + 1 or points - split < MIN_CALIBRATION_POINTS:
        raise DataError(f"history of {points} points is too short to train a window of {window} and calibrate "
                        f"on its newest {fraction:.0%} (at least {MIN_CALIBRATION_POINTS} points)")
    return split


def check_entity(series: EntitySeries, window: int, fraction: float, labelled: bool) -> None:
    """Raise DataError when ``series`` cannot train a detector of ``window`` points with its
    newest ``fraction`` held out (and, if ``labelled``, be scored against its test labels)."""
    train, test = series.train, series.test
    if train.ndim != 2 or train.shape[1] == 0:
        raise DataError(f"train split must be (time, metrics) with at least one metric, got shape {train.shape}")
    if labelled:
        if len(test) == 0:
            raise DataError("test split is empty")
        if test.ndim != 2 or test.shape[1] != train.shape[1]:
            raise DataError(f"train has {train.shape[1]} metrics, test has shape {test.shape}")
        if series.labels.shape != (len(test),):
            raise DataError(f"{len(series.labels)} test labels for {len(test)} test rows")
    for split, values in (("train", train), ("test", test)):
        infinite = int(np.isinf(values).sum())
        if infinite:
            raise DataError(f"{split} split holds {infinite} infinite values (write missing values as empty or nan)")
    observed = np.isfinite(train)
    if not observed.any():
        raise DataError("train split has no observed value (every value is missing)")
    history_split(len(train), window, fraction)
    if not any(np.ptp(column[seen]) > 0 for column, seen in zip(train.T, observed.T) if seen.any()):
        raise DataError("every metric is constant (or missing) in the train split: there is no normal variation to "
                        "learn, and any change would be flagged")


def screen(data: list[EntitySeries], windows: dict[str, int], fraction: float,
           labelled: bool) -> tuple[list[EntitySeries], list[LeftOut]]:
    """(usable entities, left out) for detectors of the given windows (name -> W). The longest
    window is the strictest, and an entity that fails for it is left out of every detector's
    figures, so that pooled figures compare like with like."""
    window = max(windows.values())
    kept, left_out = [], []
    for series in data:
        try:
            check_entity(series, window, fraction, labelled)
            kept.append(series)
        except DataError as exc:
            left_out.append(LeftOut(series.entity, str(exc)))
    return kept, left_out
