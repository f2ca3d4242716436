"""Label-free thresholds from extreme value theory: POT, and SPOT / DSPOT that keep the
threshold following the stream (Siffer et al., "Anomaly Detection in Streams with Extreme
Value Theory", KDD 2017).

POT: t = the ``level`` quantile of normal scores; the excesses over t follow a generalised
Pareto distribution (shape gamma, scale sigma); the threshold with risk q (the chance that a
normal point exceeds it) is  z_q = t + sigma/gamma ((q n / k)^-gamma - 1),  n points, k excesses.
The GPD is fitted by the method of moments, which needs only k, sum and sum of squares of
the excesses: the online state is five numbers, so every entity carries its own in the
worker's changelogged state and a replay reproduces the same thresholds.
SPOT: a point above z_q is anomalous and left out; a normal point above t adds an excess and
moves z_q. DSPOT: the same on the score minus the mean of the last ``depth`` normal scores,
for scores whose level drifts slowly.
Calibrated score (vmanomaly's convention): (score - center) / (threshold - center), where
center is the median of the calibration scores: 0 is typical, > 1 is anomalous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MIN_EXCESSES = 10  # fewer excesses than this: the empirical (1 - q) quantile is the threshold


@dataclass
class Pot:
    """The state of a POT threshold, updatable online (SPOT / DSPOT)."""

    q: float  # risk: the probability that a normal point exceeds the threshold
    level: float  # quantile of the calibration scores that sets t
    t: float  # the initial threshold; excesses are measured from it
    n: int  # normal points seen
    k: int  # excesses over t among them
    s1: float  # sum of excesses
    s2: float  # sum of squared excesses
    center: float  # median calibration score: calibrated score 0
    fallback: float  # empirical (1 - q) quantile, used while k < MIN_EXCESSES
    depth: int = 0  # DSPOT: length of the moving mean subtracted from scores (0 = SPOT)
    recent: list[float] = field(default_factory=list)  # DSPOT: the last `depth` normal scores

    @property
    def gpd(self) -> tuple[float, float]:
        """(gamma, sigma) of the excesses by the method of moments."""
        mean = self.s1 / self.k
        var = max(self.s2 / self.k - mean * mean, 0.0)
        if var <= 1e-12 * max(mean * mean, 1e-300):
            return 0.0, max(mean, 1e-12)
        ratio = mean * mean / var
        return 0.5 * (1.0 - ratio), 0.5 * mean * (ratio + 1.0)

    @property
    def level_offset(self) -> float:
        """DSPOT's local level (mean of the recent normal scores); 0 for SPOT."""
        return float(np.mean(self.recent)) if self.depth and self.recent else 0.0

    @property
    def threshold(self) -> float:
        """z_q on the raw score scale."""
        if self.k < MIN_EXCESSES:
            return self.fallback + self.level_offset
        gamma, sigma = self.gpd
        r = self.q * self.n / self.k
        z = self.t - sigma * math.log(r) if abs(gamma) < 1e-6 else self.t + sigma / gamma * (r ** (-gamma) - 1.0)
        return max(z, self.t) + self.level_offset

    def calibrated(self, score: float | np.ndarray, threshold: float | None = None) -> float | np.ndarray:
        """``threshold``: the current one, when the caller has it (it costs a GPD fit)."""
        return (score - self.center) / max((self.threshold if threshold is None else threshold) - self.center, 1e-12)

    def update(self, score: float, threshold: float | None = None) -> bool:
        """SPOT step: is ``score`` anomalous under the current threshold (``threshold``, when the
        caller has it)? A normal score above t becomes an excess and moves the threshold; an
        anomalous one changes nothing."""
        if math.isnan(score):
            return False
        if score >= (self.threshold if threshold is None else threshold):
            return True
        x = score - self.level_offset
        self.n += 1
        if x > self.t:
            self.k += 1
            self.s1 += x - self.t
            self.s2 += (x - self.t) ** 2
        if self.depth:
            self.recent = (self.recent + [float(score)])[-self.depth:]
        return False

    def to_dict(self) -> dict:
        # By hand, not dataclasses.asdict: the worker saves this state at every scored point.
        return {"q": self.q, "level": self.level, "t": self.t, "n": self.n, "k": self.k, "s1": self.s1,
                "s2": self.s2, "center": self.center, "fallback": self.fallback, "depth": self.depth,
                "recent": list(self.recent), "method": "dspot" if self.depth else "spot", "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: dict) -> Pot:
        return cls(**{k: data[k] for k in _POT_FIELDS if k in data})


_POT_FIELDS = tuple(Pot.__dataclass_fields__)


def fit_pot(scores: np.ndarray, q: float = 1e-3, level: float = 0.98, depth: int = 0) -> Pot:
    """POT on calibration scores of normal operation (no labels): the initial state."""
    if not 0 < q < 1 - level:
        raise ValueError(f"risk q must be in (0, 1 - level) = (0, {1 - level:g}), got {q}")
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) < 2:
        raise ValueError("POT needs at least two finite calibration scores")
    x = s
    if depth:  # each score minus the mean of the (up to) `depth` scores before it
        before = np.concatenate([[0.0], np.cumsum(s)])
        i = np.arange(len(s))
        lo = np.maximum(i - depth, 0)
        x = s - np.where(i > lo, (before[i] - before[lo]) / np.maximum(i - lo, 1), 0.0)
    t = float(np.quantile(x, level))
    excess = x[x > t] - t
    return Pot(q=q, level=level, t=t, n=len(x), k=len(excess), s1=float(excess.sum()),
               s2=float((excess**2).sum()), center=float(np.median(s)),
               fallback=float(np.quantile(x, 1 - q)), depth=depth, recent=s[-depth:].tolist() if depth else [])


def spot_decisions(pot: Pot, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run SPOT over a score series as the worker does: (anomalous flags, threshold in force
    at each point). ``pot`` is updated in place."""
    flags = np.zeros(len(scores), dtype=bool)
    thresholds = np.empty(len(scores))
    for i, score in enumerate(np.asarray(scores, dtype=np.float64).tolist()):
        thresholds[i] = pot.threshold
        flags[i] = pot.update(score)
    return flags, thresholds


def held_out_alarm_rate(scores: np.ndarray, q: float, level: float = 0.98, depth: int = 0) -> float | None:
    """What the risk ``q`` promises, checked without labels: POT fitted on the first half of
    held-out scores of normal operation, then SPOT run over the second half as the worker runs
    it; the share of that half flagged (q where the tail model holds). None where either half
    is too short for a tail (fewer than ``2 / (1 - level)`` scores)."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    half = len(s) // 2
    if half < 2 / (1 - level):
        return None
    flags, _ = spot_decisions(fit_pot(s[:half], q, level, depth), s[half:])
    return float(flags.mean())
