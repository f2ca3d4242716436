"""Labelled datasets: ASD (12 servers x 19 metrics, 5-minute steps), SMD (28 machines x 38
metrics, 1-minute steps; 19 complete), Nezha Online Boutique (10 microservices x 19 metrics,
1-minute steps), and the user's own folders.

The archives (``asd.tar.xz``, ``smd.tar.xz``, ``nezha-ob.tar.xz``) are looked for in the folders of
``$OMNISTREAM_DATA`` (one or more, separated by ``:``), then in ``data/`` under the working
directory, which in a clone of the repository holds the two small sets (ASD and nezha-ob, with
their licences; see data/README.md). They are unpacked once into ``~/.cache/omnistream/data``
(or ``$OMNISTREAM_CACHE``)."""

from __future__ import annotations

import csv
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

ASD_STEP_SECONDS = 300
SMD_STEP_SECONDS = 60


@dataclass(frozen=True)
class EntitySeries:
    """One entity's history: train (T1, M), test (T2, M) and test labels (T2,)."""

    entity: str
    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    names: list[str] | None = None  # metric names where the source has them, else m00, m01, ...
    step_seconds: float | None = None  # between points, where the source says

    @property
    def metrics(self) -> list[str]:
        return self.names or metric_names(self.train.shape[1])


class DataError(ValueError):
    """One entity's data cannot be used; the message names the entity (or file) and the problem."""


@dataclass(frozen=True)
class LeftOut:
    """An entity left out of a run, and why."""

    entity: str
    reason: str
    kind: str = "data"  # "data": its data cannot be used; "error": the run failed on it unexpectedly


class DatasetMissing(FileNotFoundError):
    """A named dataset's archive is in none of the data folders."""


BUNDLED = ("asd", "nezha-ob")  # small enough to travel with the repository (data/)


def data_dirs() -> list[Path]:
    """Folders searched for the dataset archives, in order."""
    env = os.environ.get("OMNISTREAM_DATA", "")
    return [Path(p) for p in env.split(os.pathsep) if p] + [Path.cwd() / "data"]


def archive_path(name: str) -> Path:
    """``<name>.tar.xz`` in the first data folder holding it."""
    folders = data_dirs()
    for folder in folders:
        if (folder / f"{name}.tar.xz").is_file():
            return folder / f"{name}.tar.xz"
    hint = ("run from the repository's root, whose data/ holds it, or set OMNISTREAM_DATA" if name in BUNDLED else
            "it is not shipped with the repository (see data/README.md for where to get it); put it in a folder "
            "and set OMNISTREAM_DATA to that folder")
    raise DatasetMissing(f"dataset archive {name}.tar.xz not found (looked in {', '.join(map(str, folders))}): "
                         f"{hint}")


def cache_dir() -> Path:
    return Path(os.environ.get("OMNISTREAM_CACHE", Path.home() / ".cache" / "omnistream")) / "data"


def _unpack(name: str, member_prefix: str) -> Path:
    """Extract the members under ``member_prefix`` of ``<name>.tar.xz`` once; return the cache root."""
    root = cache_dir()
    marker = root / f".{name}-unpacked"
    if not marker.exists():
        archive = archive_path(name)
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(member_prefix)]
            tar.extractall(root, members=members, filter="data")
        marker.touch()
    return root


def _load_csv(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)


def asd_entities() -> list[str]:
    root = _unpack("asd", "asd/csv_derived")
    names = [p.stem for p in (root / "asd/csv_derived/train").glob("omi-*.csv")]
    return sorted(names, key=lambda n: int(n.split("-")[1]))


def load_asd(entities: list[str] | None = None) -> list[EntitySeries]:
    """ASD servers (all 12 unless named), train/test/labels as float32 / int8 arrays."""
    root = _unpack("asd", "asd/csv_derived") / "asd/csv_derived"
    names = entities or asd_entities()
    out = []
    for name in names:
        if not (root / "train" / f"{name}.csv").exists():
            raise KeyError(f"unknown ASD entity {name!r}; known: {asd_entities()}")
        labels = _load_csv(root / "test_label" / f"{name}.csv")[:, 0].astype(np.int8)
        out.append(EntitySeries(name, _load_csv(root / "train" / f"{name}.csv"),
                                _load_csv(root / "test" / f"{name}.csv"), labels, step_seconds=300.0))
    return out


def metric_names(count: int = 19) -> list[str]:
    """ASD, SMD and the user's CSVs carry no metric names the worker can use: columns are m00, m01, ..."""
    return [f"m{i:02d}" for i in range(count)]


def load_smd(entities: list[str] | None = None) -> list[EntitySeries]:
    """SMD machines with complete train/test/labels (all of them unless named)."""
    root = _unpack("smd", "smd/ServerMachineDataset") / "smd/ServerMachineDataset"
    available = sorted(p.stem for p in (root / "train").glob("*.txt") if (root / "test" / p.name).exists()
                       and (root / "test_label" / p.name).exists())
    out = []
    for name in entities or available:
        if name not in available:
            raise KeyError(f"unknown or incomplete SMD entity {name!r}; known: {available}")
        labels = _load_csv(root / "test_label" / f"{name}.txt")[:, 0].astype(np.int8)
        out.append(EntitySeries(name, _load_csv(root / "train" / f"{name}.txt"),
                                _load_csv(root / "test" / f"{name}.txt"), labels, step_seconds=60.0))
    return out


NEZHA_TRAIN_DAY, NEZHA_TEST_DAY = "2022-08-22", "2022-08-23"


def load_nezha(entities: list[str] | None = None) -> list[EntitySeries]:
    """Nezha Online Boutique: one entity per microservice (its pod), 19 metrics at 1-minute
    steps. Train = the first day, test = the second day with the injected pod's fault windows
    as labels (derived/labels_<day>.csv). Both days contain faults: training is on
    contaminated data, as in production."""
    root, files = nezha_files()
    with open(root / "derived" / f"labels_{NEZHA_TEST_DAY}.csv") as f:
        rows = list(csv.DictReader(f))
    available = sorted(service for day, service in files if day == NEZHA_TEST_DAY)
    out = []
    for service in entities or available:
        if service not in available:
            raise KeyError(f"unknown nezha entity {service!r}; known: {available}")
        train, test = (nezha_metrics(files[(day, service)]) for day in (NEZHA_TRAIN_DAY, NEZHA_TEST_DAY))
        mine = sorted((int(r["row"]), int(r["label"])) for r in rows if r["service"] == service)
        labels = np.array([label for _, label in mine], dtype=np.int8)
        if len(labels) != len(test):
            raise ValueError(f"nezha {service}: {len(labels)} labels for {len(test)} test rows")
        out.append(EntitySeries(service, train, test, labels, step_seconds=60.0))
    return out


def nezha_files() -> tuple[Path, dict[tuple[str, str], Path]]:
    """The unpacked nezha-ob folder, and each pod's metric file by (day, service)."""
    root = _unpack("nezha-ob", "nezha-ob/") / "nezha-ob"
    with open(root / "derived" / "entities.csv") as f:
        return root, {(r["day"], r["service"]): root / r["metric_file"] for r in csv.DictReader(f)}


def nezha_metrics(path: Path) -> np.ndarray:
    """The 19 metric columns of a Nezha pod file (after Time, TimeStamp, PodName)."""
    with open(path) as f:
        rows = list(csv.reader(f))[1:]
    return np.array([[float(c) if c else np.nan for c in row[3:]] for row in rows], dtype=np.float32)


def _read_table(path: Path) -> np.ndarray:
    """A CSV of numbers, with or without a header line; empty cells and NaN are missing."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]

    def numbers(line: str) -> list[float]:
        return [float(c) if c.strip() else np.nan for c in line.split(",")]

    first = 0
    if lines:
        try:
            numbers(lines[0])
        except ValueError:  # a header
            first = 1
    if len(lines) <= first:
        raise DataError(f"{path}: no data rows")
    rows = []
    for i, line in enumerate(lines[first:], start=first + 1):
        try:
            rows.append(numbers(line))
        except ValueError:
            raise DataError(f"{path}: line {i} is not a CSV of numbers: {line[:80]!r}") from None
    if len({len(r) for r in rows}) > 1:
        raise DataError(f"{path}: rows have different numbers of columns")
    return np.array(rows, dtype=np.float32)


def load_folder(root: Path, entities: list[str] | None = None,
                left_out: list[LeftOut] | None = None) -> list[EntitySeries]:
    """The user's labelled data: one folder per entity holding train.csv, test.csv and
    test_label.csv (one 0/1 column, a row per test row); headers optional, NaN allowed.
    An entity whose files cannot be used raises DataError, or, given ``left_out``, is added
    to it and skipped."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder (expected one folder per entity)")
    available = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not available:
        raise ValueError(f"{root} has no entity folders (each with train.csv, test.csv, test_label.csv)")
    out = []
    for name in entities or available:
        try:
            out.append(_load_entity(root / name))
        except DataError as exc:
            if left_out is None:
                raise
            left_out.append(LeftOut(name, str(exc)))
    if not out:
        raise DataError(f"{root}: no entity folder could be read: " +
                        "; ".join(f"{e.entity}: {e.reason}" for e in left_out or []))
    return out


def _load_entity(folder: Path) -> EntitySeries:
    name = folder.name
    if not folder.is_dir():
        raise DataError(f"{folder}: no such entity folder")
    missing = [f for f in ("train.csv", "test.csv", "test_label.csv") if not (folder / f).exists()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}")
    train, test = _read_table(folder / "train.csv"), _read_table(folder / "test.csv")
    labels = _read_table(folder / "test_label.csv")
    if train.shape[1] != test.shape[1]:
        raise DataError(f"{name}: train has {train.shape[1]} metrics, test has {test.shape[1]}")
    if labels.shape != (len(test), 1):
        raise DataError(f"{name}: test_label.csv must be one column of {len(test)} rows, got {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise DataError(f"{name}: test labels must be 0 or 1")
    return EntitySeries(name, train, test, labels[:, 0].astype(np.int8))


def series_from_rows(rows: list[tuple[float, dict[str, float | None]]], names: list[str]) -> np.ndarray:
    """(T, M) float32 of ``names`` from (ts, metrics) rows in time order; absent values are NaN."""
    out = np.full((len(rows), len(names)), np.nan, dtype=np.float32)
    column = {name: j for j, name in enumerate(names)}
    for i, (_, metrics) in enumerate(rows):
        for name, value in metrics.items():
            j = column.get(name)
            if j is not None and value is not None:
                out[i, j] = value
    return out


def load_records(path: Path, entities: list[str] | None = None) -> list[EntitySeries]:
    """A recorded metric topic (JSON lines of ``{"entity","ts","metrics"}``, as `omnistream
    record` writes) as unlabelled histories: every metric name seen, in name order."""
    rows: dict[str, list[tuple[float, dict]]] = {}
    names: set[str] = set()
    with open(path, "rb") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                entity, ts, metrics = record["entity"], float(record["ts"]), record["metrics"]
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise ValueError(f"{path}: line {i} is not a metric record with entity, ts and metrics") from None
            if entities is None or entity in entities:
                rows.setdefault(entity, []).append((ts, metrics))
                names.update(metrics)
    if not rows:
        raise ValueError(f"{path}: no metric records" + (f" of {', '.join(entities)}" if entities else ""))
    ordered = sorted(names)
    empty = np.zeros((0, len(ordered)), dtype=np.float32)
    return [EntitySeries(e, series_from_rows(sorted(r, key=lambda row: row[0]), ordered), empty,
                         np.zeros(0, dtype=np.int8), ordered) for e, r in sorted(rows.items())]


def load_dataset(name: str, entities: list[str] | None = None,
                 left_out: list[LeftOut] | None = None) -> list[EntitySeries]:
    """A bundled dataset by name (asd, smd, nezha), the user's folder, or a recorded topic file.
    Given ``left_out``, entities of a folder whose files cannot be used are added to it."""
    loaders = {"asd": load_asd, "smd": load_smd, "nezha": load_nezha}
    if name in loaders:
        return loaders[name](entities)
    if Path(name).is_dir():
        return load_folder(Path(name), entities, left_out)
    if Path(name).is_file():
        return load_records(Path(name), entities)
    raise ValueError(f"unknown dataset {name!r}: give asd, smd, nezha, a folder of entity folders or a "
                     "recorded topic file (JSON lines)")
