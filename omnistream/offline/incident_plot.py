"""The picture an on-call person looks at first: an entity's metrics around an incident, the
top metrics highlighted, and its score against its threshold with the incidents shaded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def _times(ts: np.ndarray) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in ts]


def plot_incident(ts: np.ndarray, values: np.ndarray, names: list[str], scores: np.ndarray,
                  thresholds: np.ndarray, incidents: list[tuple[float, float]], highlight: list[str],
                  title: str, out: Path, notes: str = "") -> Path:
    """A PNG (two rows: metrics, score) of one entity over ``ts``: each metric standardised on
    the span shown, the ``highlight`` ones drawn in colour and named, the rest in grey; the
    score and threshold below; ``incidents`` (start, end) shaded in both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = _times(ts)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, height_ratios=[3, 2],
                                      layout="constrained")
    spread = np.nanstd(values, axis=0)
    z = (values - np.nanmean(values, axis=0)) / np.where(spread > 0, spread, 1.0)
    for j, name in enumerate(names):
        if name not in highlight:
            top.plot(times, z[:, j], color="0.8", linewidth=0.6)
    for name in highlight:
        if name in names:
            top.plot(times, z[:, names.index(name)], linewidth=1.4, label=name)
    top.set_ylabel("metrics (standardised)")
    if highlight:
        top.legend(loc="upper left", fontsize=8, title="top metrics", title_fontsize=8)
    bottom.plot(times, scores, color="tab:blue", linewidth=1.0, label="score")
    bottom.plot(times, thresholds, color="tab:red", linewidth=1.0, linestyle="--", label="threshold")
    bottom.set_ylabel("score")
    bottom.legend(loc="upper left", fontsize=8)
    for start, end in incidents:
        for ax in (top, bottom):
            ax.axvspan(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC), color="tab:orange",
                       alpha=0.2, linewidth=0)
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    fig.suptitle(title, fontsize=11)
    if notes:
        fig.text(0.01, 0.005, notes, fontsize=8, color="0.3", va="bottom")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
