"""`omnistream evaluate-transfer`: OmniTransfer's evidence over folds and seeds (RO2/RO3).

The entities are dealt into folds so that every one is held out once (``evaluate.Fold``
runs one fold under one seed); every fold runs under every seed. A (seed, fold) unit writes
``units/seed<s>-fold<k>.json`` when done, so an interrupted run resumes where it stopped and
the same command on the same machine gives the same figures.

Figures per approach and day count, mean ± std over the (seed, fold) units, each unit
pooled over its held-out entities (TP/FP/FN summed), as the targets are stated; beside them,
each seed pooled over all entities (every entity held out once) as mean ± std over seeds,
and the mean over entities. Initialisation time is judged where the user lives: the fewest
days at which the deployed (label-free) F1 is within ``DEPLOYED_TOLERANCE`` of the full-train
model's deployed F1 and the flagged share is at most twice the true anomaly rate. Training
cost of the fleet counts everything: clustering and base models once, then every entity's
transfer (DiffScore included), against one model per entity and against scratch at the
same days.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from omnistream.detectors.registry import create
from omnistream.offline.checks import history_split
from omnistream.offline.datasets import EntitySeries
from omnistream.offline.evaluate import summarise
from omnistream.offline.fit import Calibration
from omnistream.offline.parallel import run_all, threads_per_job
from omnistream.transfer.evaluate import ABLATIONS, NO_TRANSFER, Fold, Protocol, fold_entities

DEPLOYED_TOLERANCE = 0.02  # deployed F1 within this of the full-train model's counts as reached
MAX_FLAG_RATIO = 2.0  # flagged share over the true anomaly rate a reached model may show
BETAS = [0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0]
TARGETS = {"margin_over_scratch": 0.05, "share_of_full_train": 0.9, "fleet_cost_share": 0.10,
           "initialisation_share": 0.25}


def protocol_key(protocol: Protocol, held_out: list[str]) -> str:
    """What a saved unit must match to be reused."""
    text = json.dumps({"protocol": {**protocol.__dict__, "seeds": None}, "held_out": held_out}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_unit(data: list[EntitySeries], held_out: list[str], protocol: Protocol, seed: int, folder: Path,
             threads: int) -> dict:
    """One (seed, fold) unit, saved under ``folder`` (atomically) and returned."""
    import torch

    torch.set_num_threads(threads)
    unit = Fold(data, held_out, protocol, seed, folder).run()
    unit["key"] = protocol_key(protocol, held_out)
    tmp = folder / "unit.json.tmp"
    tmp.write_text(json.dumps(unit))
    tmp.replace(folder / "unit.json")
    return unit


def load_unit(folder: Path, key: str) -> dict | None:
    try:
        unit = json.loads((folder / "unit.json").read_text())
    except (OSError, ValueError):
        return None
    return unit if unit.get("key") == key else None


def compare_report(first: Path, second: Path) -> str:
    """``compare`` written to ``first``/compare.json; a short text of it."""
    result = compare(first, second)
    (Path(first) / "compare.json").write_text(json.dumps(result, indent=1))
    lines = [f"{len(result['units'])} units in both ({', '.join(result['units'])}); absolute change of the "
             "deployed F1 (mean / largest over units):"]
    for key, figs in result["rows"].items():
        if "deployed_f1" in figs:
            lines.append(f"  {key:<28} {figs['deployed_f1']['mean_abs']:.4f} / {figs['deployed_f1']['max_abs']:.4f}")
    kept = sum(o["same_order"] for o in result["order"].values())
    lines.append(f"adaptive vs scratch at {result['day']} day(s): the same order in {kept} of {len(result['order'])} "
                 "units")
    return "\n".join(lines)


# -- figures -------------------------------------------------------------------------------------
def compare(first: Path, second: Path) -> dict:
    """How far the figures of the units two runs both saved (the same protocol, e.g. on two
    machines or CPU code paths) moved: per row and figure, the mean and largest absolute change
    over units, and per unit whether adaptive transfer and scratch kept their order at the
    first day count."""
    pairs = []
    for path in sorted((Path(first) / "units").glob("*/unit.json")):
        other = Path(second) / "units" / path.parent.name / "unit.json"
        if other.exists():
            a, b = json.loads(path.read_text()), json.loads(other.read_text())
            if a.get("key") == b.get("key"):
                pairs.append((path.parent.name, unit_rows(a), unit_rows(b)))
    if not pairs:
        raise ValueError(f"{first} and {second} share no unit of the same protocol")
    rows = {}
    for key in pairs[0][1]:
        a_figs = [figures(ra[key]) for _, ra, _ in pairs]
        b_figs = [figures(rb[key]) for _, _, rb in pairs]
        rows[key] = {f: {"mean_abs": float(np.mean([abs(x[f] - y[f]) for x, y in zip(a_figs, b_figs)])),
                         "max_abs": float(np.max([abs(x[f] - y[f]) for x, y in zip(a_figs, b_figs)]))}
                     for f in ("deployed_f1", "best_f1", "flagged") if f in a_figs[0]}
    day = pairs[0][1] and min(int(k.rsplit(":", 1)[1]) for k in pairs[0][1] if k.startswith("scratch:"))
    order = {}
    for name, ra, rb in pairs:
        gaps = [figures(r[f"whac:adaptive:{day}"])["deployed_f1"] - figures(r[f"scratch:{day}"])["deployed_f1"]
                for r in (ra, rb)]
        order[name] = {"adaptive_minus_scratch": gaps, "same_order": bool(np.sign(gaps[0]) == np.sign(gaps[1]))}
    return {"units": [n for n, _, _ in pairs], "rows": rows, "day": day, "order": order}


def adaptive(unit: dict, days: int, beta: float) -> dict[str, dict]:
    """Per entity of a unit: the full transfer where DiffScore <= beta, else the partial one."""
    diff = unit["diff_scores"].get(f"whac:{days}", {})
    full, partial = unit["results"][f"whac:full:{days}"], unit["results"][f"whac:partial:{days}"]
    return {e: (full[e] if diff.get(e, np.inf) <= beta else partial[e]) for e in full}


def unit_beta(unit: dict) -> float:
    given = unit["protocol"]["transfer"].get("beta")
    return float(given) if given is not None else float(unit["clusters"]["whac"]["beta"])


def unit_rows(unit: dict) -> dict[str, dict[str, dict]]:
    """Row key -> entity -> metrics of one unit, adaptive transfer included."""
    rows = dict(unit["results"])
    for days in unit["protocol"]["days"]:
        rows[f"whac:adaptive:{days}"] = adaptive(unit, days, unit_beta(unit))
    return rows


def _cpu(per_entity: dict[str, dict]) -> float:
    return float(np.mean([m["train_seconds"] for m in per_entity.values()]))


def figures(per_entity: dict[str, dict]) -> dict[str, float]:
    """The figures of one pool of entities."""
    s = summarise(per_entity)
    true = sum(m["best"]["tp"] + m["best"]["fn"] for m in per_entity.values()) / \
        sum(m["best"]["points"] for m in per_entity.values())
    out = {"best_f1": s["best"]["pooled_f1"], "best_f1_mean": s["best"]["mean_f1"],
           "best_pa_f1": s["best_pa"]["pooled_f1"], "cpu_per_entity": _cpu(per_entity)}
    if "deployed" in s:
        out.update(deployed_f1=s["deployed"]["pooled_f1"], deployed_f1_mean=s["deployed"]["mean_f1"],
                   flagged=s["deployed"]["flagged_share"], flag_ratio=s["deployed"]["flagged_share"] / max(true, 1e-12))
    return out


def spread(values: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = [k for k in values[0] if all(k in v for v in values)]
    return {k: {"mean": float(np.mean([v[k] for v in values])), "std": float(np.std([v[k] for v in values]))}
            for k in keys}


def aggregate(units: list[dict]) -> dict:
    """Rows: mean ± std over units, and over seeds of each seed's all-entity pool."""
    per_unit = [unit_rows(u) for u in units]
    keys = [k for k in per_unit[0] if all(k in r for r in per_unit)]
    seeds = sorted({u["seed"] for u in units})
    rows = {}
    for key in keys:
        over_units = spread([figures(r[key]) for r in per_unit])
        pooled = []
        for seed in seeds:
            merged = {e: m for u, r in zip(units, per_unit) if u["seed"] == seed for e, m in r[key].items()}
            pooled.append(figures(merged))
        rows[key] = {"units": over_units, "all_entities": spread(pooled)}
    return rows


def _bound(rows: dict, key: str, figure: str, sign: int) -> float | None:
    """mean - std (sign -1), mean (0) or mean + std (+1) over units."""
    cell = rows.get(key, {}).get("units", {}).get(figure)
    return None if cell is None else cell["mean"] + sign * cell["std"]


def _mean(rows: dict, key: str, figure: str) -> float | None:
    return _bound(rows, key, figure, 0)


def initialisation(rows: dict, units: list[dict], days: list[int], fleet: int, train_days: float) -> dict:
    """Days each approach needs to serve like the full-train model, and the fleet's training cost."""
    reference = _mean(rows, "entity_full_train", "deployed_f1")
    full_cost = _mean(rows, "entity_full_train", "cpu_per_entity") * fleet
    overhead = float(np.mean([u["clusters"]["whac"]["cpu_clustering"] + u["clusters"]["whac"]["cpu_base_models"]
                              for u in units]))
    out = {}
    for approach in ["scratch", "whac:adaptive", "whac:full", "whac:partial", *NO_TRANSFER]:
        reached = [d for d in days if _mean(rows, f"{approach}:{d}", "deployed_f1") >= reference - DEPLOYED_TOLERANCE
                   and _mean(rows, f"{approach}:{d}", "flag_ratio") <= MAX_FLAG_RATIO]
        first = min(reached) if reached else None
        at = first if first is not None else days[-1]
        fleet_cpu = _mean(rows, f"{approach}:{at}", "cpu_per_entity") * fleet + \
            (overhead if approach.startswith("whac") else 0.0)
        scratch_cpu = _mean(rows, f"scratch:{at}", "cpu_per_entity") * fleet
        out[approach] = {"days": first, "share_of_history": None if first is None else first / train_days,
                         "cost_at_days": at, "fleet_cpu_seconds": fleet_cpu, "share_of_full_train_cost":
                         fleet_cpu / full_cost, "share_of_scratch_cost": fleet_cpu / max(scratch_cpu, 1e-12)}
    return {"reference_deployed_f1": reference, "full_train_days": train_days, "fleet": fleet,
            "one_model_per_entity_cpu_seconds": full_cost, "overhead_cpu_seconds": overhead, "approaches": out}


def targets(rows: dict, init: dict, days: list[int]) -> list[dict]:
    """The evidence targets (README, Transfer) on the mean over units minus (or plus) one std; met or not."""
    d = days[0]
    adaptive, scratch, full = f"whac:adaptive:{d}", f"scratch:{d}", "entity_full_train"
    low = _bound(rows, adaptive, "deployed_f1", -1)
    high_flag = _bound(rows, adaptive, "flag_ratio", +1)
    a = init["approaches"]["whac:adaptive"]
    checks = [
        (f"{d} d: adaptive deployed F1 (mean - std) >= scratch's mean + {TARGETS['margin_over_scratch']}",
         low, _mean(rows, scratch, "deployed_f1") + TARGETS["margin_over_scratch"], low is not None and
         low >= _mean(rows, scratch, "deployed_f1") + TARGETS["margin_over_scratch"]),
        (f"{d} d: adaptive deployed F1 (mean - std) >= {TARGETS['share_of_full_train']} x full train's",
         low, TARGETS["share_of_full_train"] * _mean(rows, full, "deployed_f1"),
         low >= TARGETS["share_of_full_train"] * _mean(rows, full, "deployed_f1")),
        (f"{d} d: adaptive flagged / true rate (mean + std) <= {MAX_FLAG_RATIO}", high_flag, MAX_FLAG_RATIO,
         high_flag <= MAX_FLAG_RATIO),
        ("fleet training cost (adaptive, at its initialisation days) <= "
         f"{TARGETS['fleet_cost_share']:.0%} of one model per entity", a["share_of_full_train_cost"],
         TARGETS["fleet_cost_share"], a["share_of_full_train_cost"] <= TARGETS["fleet_cost_share"]),
        (f"initialisation time (adaptive) <= {TARGETS['initialisation_share']:.0%} of the full-train history",
         a["share_of_history"], TARGETS["initialisation_share"],
         a["share_of_history"] is not None and a["share_of_history"] <= TARGETS["initialisation_share"]),
    ]
    return [{"target": t, "value": v, "bound": b, "met": bool(m)} for t, v, b, m in checks]


def beta_sweep(units: list[dict], days: list[int]) -> dict[str, dict[str, dict[str, float]]]:
    """Adaptive transfer's deployed and best F1 at each beta (and at the units' mean label-free
    beta), mean ± std over units."""
    betas = sorted(set(BETAS) | {round(float(np.mean([unit_beta(u) for u in units])), 2)})
    out = {}
    for beta in betas:
        out[str(beta)] = {str(d): spread([{k: v for k, v in figures(adaptive(u, d, beta)).items()
                                           if k in ("best_f1", "deployed_f1", "flagged")} for u in units])
                          for d in days}
    return out


def base_checks(units: list[dict]) -> dict:
    """How many base models (unit x cluster) beat the z-score on their own members' test splits."""
    checks = [c for u in units for c in u["base_check"].values()]
    return {"base_models": len(checks), "beat_zscore": sum(c["beats_zscore"] for c in checks),
            "base_best_f1": spread([{"f1": c["base_best_f1"]} for c in checks])["f1"],
            "zscore_best_f1": spread([{"f1": c["zscore_best_f1"]} for c in checks])["f1"]}


def report(units: list[dict], protocol: Protocol, data: list[EntitySeries], dataset: str, out_dir: Path,
           console: Console) -> dict:
    days = protocol.days
    rows = aggregate(units)
    train_days = float(np.mean([len(s.train) for s in data])) / protocol.points_per_day
    init = initialisation(rows, units, days, len(data), train_days)
    diffs = [v for u in units for v in u["diff_scores"].get(f"whac:{days[0]}", {}).values()]
    result = {"dataset": dataset, "protocol": {**protocol.__dict__}, "folds": sorted({tuple(u["held_out"])
                                                                                      for u in units}),
              "units": len(units), "true_rate": spread([{"r": u["true_rate"]} for u in units])["r"],
              "rows": rows, "initialisation": init, "targets": targets(rows, init, days),
              "beta": spread([{"b": unit_beta(u)} for u in units])["b"],
              "clusters": spread([{"k": u["clusters"]["whac"]["count"]} for u in units])["k"],
              "diff_scores": {"min": min(diffs), "median": float(np.median(diffs)), "max": max(diffs)} if diffs else {},
              "beta_sweep": beta_sweep(units, days), "base_check": base_checks(units),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(result, indent=1, default=list))
    (out_dir / "report.md").write_text(markdown(result))
    plot_sweep(result, out_dir / "beta_sweep.png")
    if not console.is_terminal:
        console.width = max(console.width, 220)  # a log keeps every column
    console.print(table(result))
    for t in result["targets"]:
        console.print(f"{'met' if t['met'] else 'NOT met'}: {t['target']} ({_num(t['value'])} vs {_num(t['bound'])})")
    return result


def run(data: list[EntitySeries], protocol: Protocol, out_dir: Path, dataset: str = "", jobs: int = 1,
        console: Console | None = None) -> dict:
    """Every fold under every seed (resuming units already saved), then the report."""
    console = console or Console()
    out_dir = Path(out_dir)
    folds = fold_entities([s.entity for s in data], protocol.folds)
    window = create(protocol.detector, **protocol.config).window
    history_split(min(protocol.days) * protocol.points_per_day, window, Calibration().fraction)  # DataError: too short
    units: list[dict | None] = []
    tasks = []
    for seed in protocol.seeds:
        for k, held in enumerate(folds):
            folder = out_dir / "units" / f"seed{seed}-fold{k}"
            folder.mkdir(parents=True, exist_ok=True)
            saved = load_unit(folder, protocol_key(protocol, held))
            units.append(saved)
            if saved is None:
                tasks.append((len(units) - 1, (data, held, protocol, seed, folder, threads_per_job(jobs))))
    console.print(f"{len(folds)} folds x {len(protocol.seeds)} seeds: {len(units) - len(tasks)} units saved, "
                  f"{len(tasks)} to run ({protocol.detector}, days {protocol.days}, {jobs} job(s))")
    for (i, _), unit in zip(tasks, run_all(run_unit, [t for _, t in tasks], jobs, "folds x seeds", console)):
        units[i] = unit
        console.print(f"seed {unit['seed']}, held out {', '.join(unit['held_out'])}: done")
    return report(units, protocol, data, dataset, out_dir, console)


# -- presentation --------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pm(row: dict, figure: str, scope: str = "units", percent: bool = False) -> str:
    cell = row.get(scope, {}).get(figure)
    if cell is None:
        return "-"
    if percent:
        return f"{cell['mean']:.1%} ± {cell['std']:.1%}"
    return f"{cell['mean']:.3f} ± {cell['std']:.3f}"


def ordered_rows(result: dict) -> list[str]:
    days = result["protocol"]["days"]
    keys = ["entity_full_train", *NO_TRANSFER, "random", "flag_all"]
    for d in days:
        keys += [f"scratch:{d}", f"whac:adaptive:{d}", f"whac:full:{d}", f"whac:partial:{d}", f"whac:base:{d}",
                 *[f"{tag}:adaptive:{d}" for tag in ABLATIONS], *[f"{n}:{d}" for n in NO_TRANSFER]]
    return [k for k in keys if k in result["rows"]]


COLUMNS: list[tuple[str, Callable[[dict], str]]] = [
    ("best F1", lambda r: _pm(r, "best_f1")),
    ("best F1, all entities", lambda r: _pm(r, "best_f1", "all_entities")),
    ("deployed F1", lambda r: _pm(r, "deployed_f1")),
    ("deployed F1, all entities", lambda r: _pm(r, "deployed_f1", "all_entities")),
    ("deployed F1, mean of entities", lambda r: _pm(r, "deployed_f1_mean")),
    ("flagged", lambda r: _pm(r, "flagged", percent=True)),
    ("CPU s / entity", lambda r: _num(r["units"]["cpu_per_entity"]["mean"], 1)),
]


def table(result: dict) -> Table:
    t = Table(title=f"OmniTransfer, {result['dataset']} ({result['protocol']['detector']}): "
                    f"{len(result['folds'])} folds x {len(result['protocol']['seeds'])} seeds")
    t.add_column("approach:days", no_wrap=True)
    for name, _ in COLUMNS:
        t.add_column(name, justify="right")
    for key in ordered_rows(result):
        t.add_row(key, *[fn(result["rows"][key]) for _, fn in COLUMNS])
    return t


def markdown(result: dict) -> str:
    p, init = result["protocol"], result["initialisation"]
    lines = [f"# OmniTransfer evidence: {result['dataset']}, {p['detector']}", "",
             f"{len(result['folds'])} folds (every entity held out once) x seeds {p['seeds']}; days given "
             f"{p['days']} ({p['points_per_day']} points a day; full train {init['full_train_days']:.1f} days). "
             f"Mean ± std over the {result['units']} (seed, fold) units, each pooled over its held-out entities; "
             "'all entities': each seed pooled over every entity, mean ± std over seeds. Best F1 picks its "
             "threshold with the test labels (an upper bound); deployed F1 is the label-free threshold the "
             f"worker runs. True anomaly rate {_pm({'u': {'r': result['true_rate']}}, 'r', 'u', True)} over units. "
             f"Label-free beta {result['beta']['mean']:.3g} ± {result['beta']['std']:.3g}; clusters "
             f"{result['clusters']['mean']:.1f}; held-out entities' DiffScores at {p['days'][0]} d: "
             + (" / ".join(f"{result['diff_scores'][k]:.2f}" for k in ("min", "median", "max"))
                + " (min / median / max)." if result["diff_scores"] else "none (no trained layers)."), "",
             "| approach:days | " + " | ".join(name for name, _ in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for key in ordered_rows(result):
        lines.append(f"| {key} | " + " | ".join(fn(result["rows"][key]) for _, fn in COLUMNS) + " |")
    lines += ["", f"Initialisation: the fewest days at which the mean deployed F1 is within {DEPLOYED_TOLERANCE} "
              f"of the full-train model's ({_num(init['reference_deployed_f1'])}) and the flagged share is at "
              f"most {MAX_FLAG_RATIO:g}x the true rate. Fleet of {init['fleet']} entities; one model per entity "
              f"on full train: {init['one_model_per_entity_cpu_seconds']:.0f} CPU s; clustering and base models: "
              f"{init['overhead_cpu_seconds']:.0f} CPU s (in the transfer rows).", "",
              "| approach | days | share of history | fleet CPU s (at days) | vs one model per entity | vs scratch |",
              "|---|---|---|---|---|---|"]
    for approach, v in init["approaches"].items():
        share = "not reached" if v["share_of_history"] is None else f"{v['share_of_history']:.1%}"
        lines.append(f"| {approach} | {v['days'] or '-'} | {share} | {v['fleet_cpu_seconds']:.0f} "
                     f"({v['cost_at_days']} d) | {v['share_of_full_train_cost']:.1%} | "
                     f"{v['share_of_scratch_cost']:.1%} |")
    lines += ["", "| target | value | bound | met |", "|---|---|---|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {_num(t['value'])} | {_num(t['bound'])} | {'yes' if t['met'] else 'no'} |")
    b = result["base_check"]
    lines += ["", f"Base models against the z-score on their own cluster's source entities' test splits (best F1, "
              f"test labels): {b['beat_zscore']} of {b['base_models']} beat it; base "
              f"{b['base_best_f1']['mean']:.3f} ± {b['base_best_f1']['std']:.3f}, z-score "
              f"{b['zscore_best_f1']['mean']:.3f} ± {b['zscore_best_f1']['std']:.3f}.", "",
              "beta sweep (adaptive transfer, deployed F1 / best F1, mean over units):", "",
              "| beta | " + " | ".join(f"{d} d" for d in p["days"]) + " |", "|---|" + "---|" * len(p["days"])]
    for beta, by_day in result["beta_sweep"].items():
        lines.append(f"| {beta} | " + " | ".join(f"{v['deployed_f1']['mean']:.3f} / {v['best_f1']['mean']:.3f}"
                                                 for v in by_day.values()) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    betas = [float(b) for b in result["beta_sweep"]]
    rows = result["rows"]
    for i, d in enumerate(result["protocol"]["days"]):
        cells = [result["beta_sweep"][b][str(d)]["deployed_f1"] for b in result["beta_sweep"]]
        mean, std = np.array([c["mean"] for c in cells]), np.array([c["std"] for c in cells])
        ax.plot(betas, mean, "o-", color=f"C{i}", label=f"adaptive, {d} d")
        ax.fill_between(betas, mean - std, mean + std, color=f"C{i}", alpha=0.12)
        ax.axhline(rows[f"scratch:{d}"]["units"]["deployed_f1"]["mean"], color=f"C{i}", ls=":", lw=1)
    ax.axhline(rows["entity_full_train"]["units"]["deployed_f1"]["mean"], color="k", ls="--", lw=1,
               label="one model per entity, full train")
    ax.set_xscale("log")
    ax.set_xlabel("beta (DiffScore relative to the base model's own cluster)")
    ax.set_ylabel("deployed F1 (label-free threshold)")
    ax.set_title(f"{result['dataset']} {result['protocol']['detector']}: mean ± std over units; "
                 "dotted = scratch", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
