"""The `omnistream` command: broker, worker, replay, record, cluster, fit, transfer, evaluate, topology, bench,
demo, schemas."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from omnistream.cli.checkout import checkout_file
from omnistream.stream.config import OPEN_AFTER

app = typer.Typer(help="Streaming anomaly detection for many cloud entities on Kafka.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_show_locals=False)
console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c",
                                                help="YAML/TOML config file (else $OMNISTREAM_CONFIG)")]
BootstrapOpt = Annotated[str | None, typer.Option(help="Kafka bootstrap servers [default: 127.0.0.1:9092]")]
PrefixOpt = Annotated[str | None, typer.Option(help="topic name prefix [default: none]")]
# The default of `fit` and `evaluate`: the detector whose worst best-F1 ratio to the z-score over ASD, SMD and
# nezha is highest (within 0.05 a tie, broken by the mean deployed F1, within 0.01 a tie again, broken by the
# cost); README, Evaluation.
DEFAULT_DETECTOR = "seasonal"
EntitiesOpt = Annotated[str | None, typer.Option(help="comma-separated entity ids [default: all]")]


def _settings(config: Path | None, bootstrap: str | None = None, prefix: str | None = None, **top):
    from pydantic import ValidationError

    from omnistream.stream.config import load_settings

    kafka = {k: v for k, v in {"bootstrap": bootstrap, "topic_prefix": prefix}.items() if v is not None}
    try:
        return load_settings(config, **({"kafka": kafka} if kafka else {}), **top)
    except (OSError, ValueError) as exc:  # missing file, bad YAML/TOML, or a setting out of range
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()) \
            if isinstance(exc, ValidationError) else str(exc)
        raise typer.BadParameter(f"configuration: {detail}") from None


def _split(entities: str | None) -> list[str] | None:
    return [e.strip() for e in entities.split(",") if e.strip()] if entities else None


def _checkout_file(*parts: str) -> Path:
    try:
        return checkout_file(*parts)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc)) from None


EX_TEMPFAIL = 75  # sysexits: a temporary failure, worth trying again


def _kafka_failure(exc: Exception, bootstrap: str) -> str:
    """The console line for a failed talk with Kafka: refused credentials, or no connection at all."""
    from omnistream.stream.topics import refused

    if refused(exc):
        return f"[red]Kafka at {bootstrap} refused the credentials (authentication or authorization failed)[/]: " \
               f"{escape(str(exc))}"
    return f"[red]cannot reach Kafka at {bootstrap}[/]: {escape(str(exc))}"


@app.command()
def broker(action: Annotated[str, typer.Argument(help="start | stop | status | fetch | reset")]) -> None:
    """Run the local single-node Apache Kafka broker (KRaft; jars from Maven Central)."""
    if action not in ("start", "stop", "status", "fetch", "reset"):
        raise typer.BadParameter("action must be start, stop, status, fetch or reset")
    raise typer.Exit(subprocess.call([str(_checkout_file("deploy", "kafka", "broker.sh")), action]))


@app.command()
def worker(config: ConfigOpt = None, bootstrap: BootstrapOpt = None, prefix: PrefixOpt = None,
           model_dir: Annotated[Path | None, typer.Option(
               help="folder of exported models [default: models-store]")] = None,
           allowlist: Annotated[Path | None, typer.Option(
               help="sha256 sums of the model files that may load (`sha256sum models/*.pt > FILE`); other files "
                    "load only if announced on the models topic. A model file is code: keep this list where only "
                    "you can write")] = None,
           stride: Annotated[int | None, typer.Option(help="score every N-th point of an entity [default: 1]")] = None,
           device: Annotated[str | None, typer.Option(help="auto | cpu | cuda [default: auto]")] = None,
           metrics_port: Annotated[int | None, typer.Option(help="Prometheus port, 0 = off [default: 0]")] = None,
           loglevel: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
           restart: Annotated[bool, typer.Option(help="run the worker in a child process and start it again if it "
                                                      "crashes (off: leave that to an orchestrator)")] = True,
           processes: Annotated[int, typer.Option(
               min=1, help="worker processes on this machine, all in the deployment's consumer group; each keeps "
                           "its state in data_dir/process-<i> and serves metrics on metrics_port + i")] = 1) -> None:
    """Consume metric topics, score windows with the models, publish anomaly events.

    Liveness and readiness: /live and /ready beside /metrics on the Prometheus port."""
    from confluent_kafka import KafkaException

    from omnistream.stream.processes import metrics_port_of, process_index, run_processes, state_folder
    from omnistream.stream.restart import is_child, run_restarting

    command = [sys.executable, "-m", "omnistream.cli.main", *sys.argv[1:]]
    if processes > 1 and process_index() is None:
        raise typer.Exit(run_processes(command, processes))
    if restart and not is_child():
        raise typer.Exit(run_restarting(command))
    from omnistream.stream.app import create_app
    from omnistream.stream.faust_worker import Worker
    from omnistream.stream.topics import commit_start_offsets, ensure_topics, refused, topic_differences

    window = {"stride": stride} if stride else None
    settings = _settings(config, bootstrap, prefix, model_dir=model_dir, device=device, metrics_port=metrics_port,
                         model_allowlist=allowlist, **({"window": window} if window else {}))
    settings.data_dir = state_folder(settings.data_dir, process_index())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.metrics_port = metrics_port_of(settings.metrics_port, process_index())
    try:
        ensure_topics(settings)
        for line in topic_differences(settings):
            console.print(f"[yellow]topic settings differ:[/] {line}")
        commit_start_offsets(settings)
    except KafkaException as exc:  # refused credentials need a person (2); an absent broker, a retry (75)
        console.print(_kafka_failure(exc, settings.kafka.bootstrap))
        raise typer.Exit(2 if refused(exc) else EX_TEMPFAIL) from None
    faust_app = create_app(settings, loglevel.upper())
    faust_worker = Worker(faust_app, loglevel=loglevel.upper())
    faust_worker.shutdown_seconds = settings.shutdown_seconds
    faust_worker.json_logs = settings.log_format == "json"
    faust_worker.execute_from_commandline()


@app.command()
def replay(file: Annotated[Path | None, typer.Argument(help="JSON-lines file of metric records")] = None,
           dataset: Annotated[str | None, typer.Option(
               help="asd | smd | nezha | PATH (a data folder) instead of a file")] = None,
           split: Annotated[str, typer.Option(help="train | test")] = "test",
           entities: EntitiesOpt = None,
           limit: Annotated[int | None, typer.Option(help="at most N points per entity")] = None,
           speed: Annotated[float, typer.Option(help="data seconds per wall second; 0 = as fast as possible")] = 0.0,
           shared_topic: Annotated[bool, typer.Option(
               help="one keyed `metrics` topic instead of metrics.<entity>")] = False,
           config: ConfigOpt = None, bootstrap: BootstrapOpt = None, prefix: PrefixOpt = None) -> None:
    """Produce recorded or labelled data into the metric topics."""
    from rich.progress import Progress

    from omnistream.cli.replay import dataset_records, file_records, replay as run_replay
    from omnistream.stream.topics import client_config

    if (file is None) == (dataset is None):
        raise typer.BadParameter("give either a FILE or --dataset")
    if file is not None and not file.exists():
        raise typer.BadParameter(f"{file} does not exist")
    settings = _settings(config, bootstrap, prefix)
    records = file_records(file) if file else dataset_records(dataset, split, _split(entities), limit=limit)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=None)
        sent = run_replay(records, client_config(settings), settings.kafka.topic_prefix, not shared_topic, speed,
                          progress=lambda n: progress.advance(task, n))
    console.print(f"replayed {sent} records")


@app.command()
def record(topic: Annotated[str, typer.Argument(help="topic to copy (without prefix)")],
           out: Annotated[Path, typer.Argument(help="JSON-lines file to write")],
           idle: Annotated[float, typer.Option(help="stop after this many idle seconds")] = 5.0,
           config: ConfigOpt = None, bootstrap: BootstrapOpt = None, prefix: PrefixOpt = None) -> None:
    """Copy a topic from its beginning into a JSON-lines file (replayable with `replay`)."""
    from omnistream.cli.replay import record_topic
    from omnistream.stream.topics import client_config

    settings = _settings(config, bootstrap, prefix)
    count = record_topic(settings.topic(topic), out, client_config(settings), idle)
    console.print(f"recorded {count} messages to {out}")


DatasetOpt = Annotated[str, typer.Option(help="asd | smd | nezha | PATH: a folder of entity folders with train.csv, "
                                              "test.csv, test_label.csv (see README)")]
DetectorConfigOpt = Annotated[Path | None, typer.Option(
    "--detector-config", help="YAML/TOML file of hyper-parameters: {detector: {key: value}} "
                              "(see `omnistream detectors`)")]
JobsOpt = Annotated[int, typer.Option(help="entities trained in parallel processes")]
RiskOpt = Annotated[float, typer.Option(help="POT risk q: share of normal points allowed above the threshold")]
DriftOpt = Annotated[int, typer.Option(help="DSPOT: thresholds on the score minus the mean of the last N normal "
                                            "scores, for slowly drifting scores; 0 = SPOT")]


def _detector_configs(path: Path | None) -> dict[str, dict]:
    if path is None:
        return {}
    from omnistream.stream.config import read_config_file

    try:
        data = read_config_file(path)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"detector config: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise typer.BadParameter(f"detector config {path}: expected {{detector: {{key: value}}}}")
    return data


def _load_data(dataset: str, entities: str | None, left_out: list | None = None):
    """The dataset's entities; given ``left_out``, a folder's unreadable entities go there."""
    from omnistream.offline.datasets import load_dataset

    try:
        return load_dataset(dataset, _split(entities), left_out)
    except (OSError, KeyError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None


def _left_out_summary(left_out: list, done: str) -> None:
    """Print the entities a run left out, and end with 1 if one of them failed unexpectedly
    (its traceback is in the log or the report), else go on."""
    from rich.table import Table

    if not left_out:
        return
    table = Table(title=f"{len(left_out)} entities left out ({done})", title_justify="left")
    for column in ("entity", "why"):
        table.add_column(column)
    for e in left_out:
        table.add_row(e.entity, escape(e.reason) if e.kind == "data" else f"[red]{escape(e.reason)}[/]")
    Console().print(table)
    if any(e.kind == "error" for e in left_out):
        raise typer.Exit(1)


ClustersOpt = Annotated[Path, typer.Option(help="cluster registry folder (written by `omnistream cluster`)")]


@app.command()
def cluster(dataset: DatasetOpt = "smd", entities: EntitiesOpt = None,
            out: ClustersOpt = Path("clusters"),
            settings_file: Annotated[Path | None, typer.Option(
                "--settings", help="YAML/TOML file of clustering settings (keys as below and in README)")] = None,
            segment_length: Annotated[int | None, typer.Option(help="points per segment [default: 60]")] = None,
            clusters: Annotated[int | None, typer.Option(
                help="fixed number of clusters [default: best silhouette]")] = None,
            max_clusters: Annotated[int | None, typer.Option(
                help="most clusters the silhouette rule tries [default: 12]")] = None,
            direct_limit: Annotated[int | None, typer.Option(
                help="most segments clustered directly; beyond, a sample is clustered and the rest assigned "
                     "[default: 8000]")] = None) -> None:
    """W-HAC: cluster the segments of many entities' histories (OmniTransfer section 4.3.1) into
    a registry for `fit --per-cluster` and `transfer`; prints a table, plots the dendrogram."""
    import numpy as np
    from pydantic import ValidationError
    from rich.table import Table

    from omnistream.stream.config import read_config_file
    from omnistream.transfer.plots import plot_dendrogram, plot_members
    from omnistream.transfer.whac import ClusterConfig, cluster_entities

    data = _load_data(dataset, entities)
    overrides = {k: v for k, v in {"segment_length": segment_length, "clusters": clusters, "max_clusters": max_clusters,
                                   "direct_limit": direct_limit}.items() if v is not None}
    try:
        config = ClusterConfig.model_validate({**(read_config_file(settings_file) if settings_file else {}),
                                               **overrides})
    except (OSError, ValueError, ValidationError) as exc:
        raise typer.BadParameter(f"clustering settings: {exc}") from None
    names = data[0].metrics
    if any(s.metrics != names for s in data):
        raise typer.BadParameter("every entity must have the same metrics to be clustered together")
    try:
        registry = cluster_entities({s.entity: s.train for s in data}, names, config, lambda m: console.print(m))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    registry.save(out)
    table = Table(title=f"{registry.count} clusters of {registry.info['segments']} segments "
                        f"({registry.info['rule']}), registry {registry.version} in {out}")
    for column in ("cluster", "segments", "entities (majority)", "nearest segments from"):
        table.add_column(column)
    for c in range(registry.count):
        members = sorted(e for e, k in registry.entities.items() if k == c)
        sources = sorted({e for e, _ in registry.nearest[c]})
        table.add_row(str(c), str(registry.sizes[c]), f"{len(members)}: " + ", ".join(members[:6]) +
                      (" ..." if len(members) > 6 else ""),
                      ", ".join(sources[:6]) + (" ..." if len(sources) > 6 else ""))
    Console().print(table)
    by_entity = {s.entity: s.train for s in data}
    segments: dict[str, np.ndarray] = {}  # each entity's segments, made once however often it is picked
    nearest = {}
    for c in range(registry.count):
        picked = []
        for entity, start in registry.nearest[c][:10]:
            if entity not in segments:
                segments[entity] = registry.settings.segments(by_entity[entity])[0]
            picked.append(segments[entity][start // registry.settings.length])
        nearest[c] = registry.align(np.stack(picked))
    plot_dendrogram(registry, out / "dendrogram.png")
    plot_members(registry, nearest, out / "clusters.png")
    console.print(f"plots: {out / 'dendrogram.png'}, {out / 'clusters.png'}")


@app.command()
def fit(detector: Annotated[str, typer.Option(help="registered detector (see `omnistream detectors`)")] =
        DEFAULT_DETECTOR,
        dataset: DatasetOpt = "asd", entities: EntitiesOpt = None,
        out: Annotated[Path, typer.Option(help="model folder the worker reads")] = Path("models-store"),
        detector_config: DetectorConfigOpt = None, risk: RiskOpt = 1e-2, drift_depth: DriftOpt = 0,
        jobs: JobsOpt = 1,
        per_cluster: Annotated[bool, typer.Option("--per-cluster", help="one base model per cluster of --clusters "
                                                                       "instead of one model per entity")] = False,
        clusters: ClustersOpt = Path("clusters"),
        system: Annotated[bool, typer.Option(
            "--system", help="one system model (e.g. topomad) of the dataset as a system (nezha: its first day; or "
                             "a folder with topology.csv), written as <system>.pt")] = False) -> None:
    """Train one model per entity on its train split (or, with --per-cluster, one base model per
    cluster on the segments nearest its centroid; with --system, one model of the whole system),
    calibrate the label-free threshold, export."""
    from omnistream.detectors.registry import DetectorError
    from omnistream.offline.datasets import DataError
    from omnistream.offline.fit import Calibration, fit_dataset

    if system:
        _fit_system(detector, dataset, out, _detector_configs(detector_config).get(detector, {}),
                    Calibration(risk=risk, depth=drift_depth))
        return
    left_out: list = []
    data = _load_data(dataset, entities, left_out)
    config = _detector_configs(detector_config).get(detector, {})
    calibration = Calibration(risk=risk, depth=drift_depth)
    try:
        if per_cluster:
            from omnistream.transfer.base_models import base_folder, fit_per_cluster
            from omnistream.transfer.registry import RegistryError

            try:
                fit_per_cluster(detector, clusters, {s.entity: s.train for s in data}, config, calibration,
                                lambda e: Console().print(
                                    f"cluster {e.cluster}: {e.detector} on {e.train_windows} windows in "
                                    f"{e.cpu_seconds:.1f} CPU s, threshold {e.threshold:.4g}, DiffScore reference "
                                    f"{e.reference:.4g} -> {base_folder(clusters) / e.model}"))
            except RegistryError as exc:
                raise typer.BadParameter(str(exc)) from None
        else:
            results, left_out = fit_dataset(detector, data, out, config, calibration, jobs, Console(), left_out)
            if not results:
                raise DataError("no entity could be fitted")
    except DetectorError as exc:
        raise typer.BadParameter(str(exc)) from None
    except DataError as exc:
        _left_out_summary(left_out, "nothing fitted")
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    if not per_cluster:
        _left_out_summary(left_out, f"{len(results)} models written to {out}")


def _fit_system(detector: str, dataset: str, out: Path, config: dict, calibration) -> None:
    from omnistream.detectors.registry import DetectorError, detector_class
    from omnistream.offline.fit_system import export_system, fit_system
    from omnistream.offline.systems import load_system_dataset

    try:
        if detector_class(detector).input_kind != "system":
            raise typer.BadParameter(f"{detector} reads entity windows; --system needs a system detector "
                                     "(topomad, stdrift)")
        series = load_system_dataset(dataset)[0]
        fit = fit_system(detector, series, config, calibration)
        path, sha = export_system(fit, series, out)
    except DetectorError as exc:
        raise typer.BadParameter(str(exc)) from None
    except (OSError, ValueError) as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    d = fit.fitted.detector
    Console().print(f"{series.system}: {d.name} over {len(series.nodes)} entities and "
                    f"{len(series.topology.edges)} calls, threshold {fit.fitted.pot.threshold:.4g}, "
                    f"{len(d.history['val_loss'])} epochs in {d.train_seconds:.1f} s -> {path} (sha256 {sha[:12]})")


@app.command()
def transfer(config: ConfigOpt = None, bootstrap: BootstrapOpt = None, prefix: PrefixOpt = None,
             model_dir: Annotated[Path | None, typer.Option(
                 help="model folder the workers read [default: models-store]")] = None,
             clusters: Annotated[Path | None, typer.Option(
                 help="cluster registry with base models [default: clusters]")] = None,
             points: Annotated[int | None, typer.Option(
                 help="points of an entity's data a transfer trains on [default: 1440]")] = None,
             instance: Annotated[str, typer.Option(help="static group member id (faster hand-over on restart)")] = "",
             metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics port, 0 = off")] = 0,
             loglevel: Annotated[str, typer.Option(help="debug | info | warning")] = "info") -> None:
    """Serve `transfer-requests`: cold-start a new entity on its nearest cluster's base model,
    then transfer (full or partial, by DiffScore) on its first data and announce the model on `models`."""

    from confluent_kafka import KafkaException

    from omnistream.stream.logs import use_json
    from omnistream.stream.shutdown import stop_on_signals
    from omnistream.stream.topics import ensure_topics
    from omnistream.transfer.registry import RegistryError
    from omnistream.transfer.service import TransferService

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    transfer_overrides = {k: v for k, v in {"registry": clusters, "points": points}.items() if v is not None}
    settings = _settings(config, bootstrap, prefix, model_dir=model_dir)
    if settings.log_format == "json":
        use_json(logging.getLogger().handlers)
    if transfer_overrides:
        from pydantic import ValidationError

        try:
            merged = settings.transfer.model_validate({**settings.transfer.model_dump(), **transfer_overrides})
        except ValidationError as exc:
            raise typer.BadParameter(f"transfer settings: {exc.errors()[0]['msg']}") from None
        settings = settings.model_copy(update={"transfer": merged})
    try:
        ensure_topics(settings)
        service = TransferService(settings, instance)
    except KafkaException as exc:
        console.print(_kafka_failure(exc, settings.kafka.bootstrap))
        raise typer.Exit(1) from None
    except RegistryError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, settings.metrics_host)
    service.run(stop_on_signals(settings.shutdown_seconds,
                                lambda: "a transfer or the Kafka clients' close is still running"))


@app.command()
def alerts(alertmanager: Annotated[str | None, typer.Option(
               help="Alertmanager's base address, e.g. http://127.0.0.1:9093")] = None,
           webhook: Annotated[str | None, typer.Option(help="any HTTP endpoint taking the alerts as JSON")] = None,
           resend: Annotated[float, typer.Option(min=1.0, help="seconds between re-sends of a firing alert")] = 60.0,
           plot_url: Annotated[str, typer.Option(
               help="link put in each alert, with {entity}, {start}, {end}, {event_id}")] = "",
           lookback: Annotated[float, typer.Option(
               help="hours of events read again at start to find the incidents still open")] = 24.0,
           start: Annotated[str, typer.Option(help="where a new consumer group starts: latest | earliest")] = "latest",
           config: ConfigOpt = None, bootstrap: BootstrapOpt = None, prefix: PrefixOpt = None,
           loglevel: Annotated[str, typer.Option(help="debug | info | warning")] = "info") -> None:
    """Forward anomaly events to Alertmanager (or a webhook): an incident fires while open, is
    re-sent while it lasts, and resolves when it ends; restarts neither lose nor repeat alerts."""

    from omnistream.alerts.forward import Forwarder
    from omnistream.alerts.targets import Alertmanager, Webhook
    from omnistream.stream.logs import use_json
    from omnistream.stream.shutdown import stop_on_signals

    if (alertmanager is None) == (webhook is None):
        raise typer.BadParameter("give either --alertmanager or --webhook")
    if start not in ("latest", "earliest"):
        raise typer.BadParameter("--start is latest or earliest")
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(config, bootstrap, prefix)
    if settings.log_format == "json":
        use_json(logging.getLogger().handlers)
    target = Alertmanager(alertmanager) if alertmanager else Webhook(webhook)
    forwarder = Forwarder(settings, target, resend, plot_url, lookback, start)
    forwarder.run(stop_on_signals(settings.shutdown_seconds,
                                  lambda: "the alert target or the Kafka client's close is waiting"))


@app.command()
def plot(entity: Annotated[str | None, typer.Argument(help="the entity (or give --event-id)")] = None,
         event_id: Annotated[str | None, typer.Option(help="an event of the anomalies topic: its incident")] = None,
         start: Annotated[float | None, typer.Option(
             "--from", help="epoch seconds [default: around the incident]")] = None,
         end: Annotated[float | None, typer.Option(
             "--to", help="epoch seconds [default: around the incident]")] = None,
         topic: Annotated[str | None, typer.Option(
             help="the entity's metric or collector topic [default: metrics.<entity>, else metrics]")] = None,
         out: Annotated[Path, typer.Option(help="PNG to write")] = Path("incident.png"),
         model_dir: Annotated[Path | None, typer.Option(help="model folder [default: models-store]")] = None,
         config: ConfigOpt = None, bootstrap: BootstrapOpt = None, prefix: PrefixOpt = None) -> None:
    """An incident as a PNG: the entity's metrics around it (top metrics highlighted), its score
    and threshold, the incidents shaded; scored again by its model file as the worker does."""
    from confluent_kafka import KafkaException

    from omnistream.cli.plot import plot_entity

    settings = _settings(config, bootstrap, prefix, model_dir=model_dir)
    try:
        figure = plot_entity(settings, entity, out, event_id, start, end, topic)
    except (LookupError, ValueError, KafkaException) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    console.print(f"{figure.path}: {figure.entity}, {len(figure.incidents)} incident(s) shown, "
                  f"top metrics {', '.join(figure.highlight) or '-'}")


@app.command()
def evaluate(detector: Annotated[str, typer.Option(help="comma-separated registered detectors; the baselines random, "
                                                        "flag_all, zscore, pca and seasonal always run")] =
             DEFAULT_DETECTOR,
             dataset: DatasetOpt = "asd", entities: EntitiesOpt = None,
             seeds: Annotated[int, typer.Option(help="seeds per deep detector (mean ± std)")] = 3,
             detector_config: DetectorConfigOpt = None, risk: RiskOpt = 1e-2, drift_depth: DriftOpt = 0,
             jobs: JobsOpt = 1,
             shift_hours: Annotated[float, typer.Option(min=0.0,
                 help="level shifts, as the worker's shift.persist_seconds: a block of this many hours of an "
                      "entity's data with 80 % flagged re-baselines it (0 = off)")] = 4.0,
             refits: Annotated[bool, typer.Option(help="serve the refit a level shift asks for, as a deployment "
                                                       "with the transfer service does (trained on the 1,440 "
                                                       "points from the shifted block)")] = True,
             open_after: Annotated[int, typer.Option(min=1, help="incidents: flagged points in a row that open one, "
                                                                 "as the worker's decide.open_after")] = OPEN_AFTER,
             system: Annotated[bool, typer.Option("--system", help="evaluate the dataset as one system (nezha, a "
                                                                  "folder with topology.csv, or an entity dataset "
                                                                  "such as smd: its entities the nodes, no call "
                                                                  "graph): system detectors such as topomad against "
                                                                  "the per-entity ones, and root cause")] = False,
             out: Annotated[Path, typer.Option(
                 help="folder for report.json, report.md and plots")] = Path("reports/evaluate")) -> None:
    """Every detector on every entity: F1 without and with point-adjust, F1 and flagged share at the
    deployed label-free threshold, pooled and per entity, against the baselines of the same run."""
    from omnistream.detectors.registry import DetectorError
    from omnistream.offline.datasets import DataError, LeftOut
    from omnistream.offline.evaluate import run
    from omnistream.offline.fit import Calibration
    from omnistream.stream.config import ShiftSettings

    calibration = Calibration(risk=risk, depth=drift_depth, refits=refits, open_after=open_after,
                              shift=ShiftSettings(persist_seconds=shift_hours * 3600))
    if system:
        from omnistream.offline import evaluate_system
        from omnistream.offline.systems import load_system_dataset

        try:
            folds = load_system_dataset(dataset)
            evaluate_system.run(dataset, folds, _split(detector) or [], _detector_configs(detector_config), seeds,
                                calibration, out, jobs, Console())
        except DetectorError as exc:
            raise typer.BadParameter(str(exc)) from None
        except (OSError, ValueError) as exc:
            console.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(2) from None
        return
    left_out: list = []
    data = _load_data(dataset, entities, left_out)
    try:
        report = run(dataset, data, _split(detector) or [], _detector_configs(detector_config), seeds,
                     calibration, out, jobs, Console(), left_out)
    except DetectorError as exc:
        raise typer.BadParameter(str(exc)) from None
    except DataError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    _left_out_summary([LeftOut(**e) for e in report["left_out"]],
                      f"{len(report['entities'])} in the figures")


@app.command("evaluate-transfer")
def evaluate_transfer(detector: Annotated[str, typer.Option(
                          help="registered detector (see `omnistream detectors`); TranAD is the strongest "
                               "transferable one of the detection work")] = "tranad",
                      dataset: DatasetOpt = "smd", entities: EntitiesOpt = None,
                      folds: Annotated[int, typer.Option(
                          help="folds of held-out entities (every entity held out once)")] = 4,
                      seeds: Annotated[int, typer.Option(help="seeds of the models (0, 1, ...); every fold "
                                                              "runs under every seed")] = 3,
                      days: Annotated[str, typer.Option(
                          help="comma-separated days of data a held-out entity is given")] = "1,2,4",
                      points_per_day: Annotated[int | None, typer.Option(
                          help="points per day [default: from the data's step: SMD 1440, ASD 288]")] = None,
                      detector_config: DetectorConfigOpt = None,
                      beta: Annotated[float | None, typer.Option(
                          help="DiffScore threshold of the adaptive strategy "
                               "[default: the base models' label-free beta]")] = None,
                      ablations: Annotated[bool, typer.Option(
                          help="also uniform weights and no alignment (first day count)")] = True,
                      base_segments: Annotated[int | None, typer.Option(
                          help="segments nearest each centroid a base model trains on "
                               "[default: the clustering's, 20]")] = None,
                      jobs: Annotated[int, typer.Option(help="(seed, fold) units run in parallel processes")] = 1,
                      out: Annotated[Path, typer.Option(help="folder for report.json, report.md, beta_sweep.png "
                                                             "and the saved units (a rerun resumes them)")] =
                      Path("reports/transfer"),
                      compare: Annotated[Path | None, typer.Option(
                          help="another run's --out: only compare the units both saved (e.g. run on two machines) "
                               "and write compare.json to --out")] = None) -> None:
    """OmniTransfer's evidence (RO2/RO3) over folds and seeds: held-out entities given 1, 2, ...
    days, transferred from cluster base models vs trained from scratch vs one model per entity on
    the full train split, judged at the deployed label-free threshold."""
    from omnistream.detectors.registry import DetectorError
    from omnistream.transfer.evaluate import Protocol
    from omnistream.transfer.evidence import compare_report, run

    if compare is not None:
        try:
            console.print(compare_report(out, compare))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        return
    data = _load_data(dataset, entities)
    step = data[0].step_seconds if data else None
    per_day = points_per_day or (round(86400 / step) if step else 1440)
    try:
        protocol = Protocol(detector=detector, config=_detector_configs(detector_config).get(detector, {}),
                            days=[int(d) for d in days.split(",")], points_per_day=per_day, folds=folds,
                            seeds=list(range(seeds)), ablations=ablations,
                            cluster={} if base_segments is None else {"nearest": base_segments},
                            transfer={} if beta is None else {"beta": beta})
        run(data, protocol, out, dataset, jobs, Console())
    except (DetectorError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def detectors() -> None:
    """The registered detectors, their papers and hyper-parameters (defaults and meaning)."""
    from rich.table import Table

    from omnistream.detectors.registry import describe, detector_class, names

    out = Console()
    for name in names():
        cls = detector_class(name)
        table = Table(title=f"{name}: {cls.paper} (score reduction: {cls.reduction})", title_justify="left")
        for col in ("hyper-parameter", "default", "meaning"):
            table.add_column(col)
        for key, (default, meaning) in describe(name).items():
            table.add_row(key, str(default), meaning)
        out.print(table)


@app.command()
def bench(info: Annotated[bool, typer.Option("--info", help="only say which kernel backend and target run and "
                                                          "why, the BLAS NumPy uses and the cores")] = False) -> None:
    """Benchmarks (kernels, W-HAC at fleet scale; end to end when a broker answers on 127.0.0.1:9092),
    as ratios from the same run."""
    if info:
        import numpy as np

        from omnistream import kernels

        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        console.print(f"kernels: [bold]{kernels.BACKEND_NAME}[/] ({kernels.BACKEND_REASON})")
        if kernels.BACKEND_NAME == "cpp":
            console.print(f"kernel targets this CPU runs: {', '.join(kernels.targets.runnable())} "
                          f"(cap with {kernels.targets.CAP_VARIABLE})")
        console.print(f"NumPy {np.__version__} BLAS: {blas.get('name')} {blas.get('version', '')}")
        console.print(f"cores available: {len(os.sched_getaffinity(0))}")
        return
    raise typer.Exit(subprocess.call([sys.executable, str(_checkout_file("bench", "run.py"))]))


topology_app = typer.Typer(help="Service topologies on the compacted `topology` topic (one per system).",
                           no_args_is_help=True)
app.add_typer(topology_app, name="topology")


@topology_app.command("publish")
def topology_publish(file: Annotated[Path, typer.Argument(help="CSV edge list: a header with source and target "
                                                               "(caller / callee), optionally weight")],
                     system: Annotated[str, typer.Option(help="the system's name (the message's key)")],
                     version: Annotated[str | None, typer.Option(help="[default: the time of publishing]")] = None,
                     valid_from: Annotated[float | None, typer.Option(
                         help="epoch seconds from which the graph holds [default: now]")] = None,
                     dry_run: Annotated[bool, typer.Option("--dry-run",
                                                           help="print the message, send nothing")] = False,
                     config: ConfigOpt = None, bootstrap: BootstrapOpt = None, prefix: PrefixOpt = None) -> None:
    """Publish a system's call graph from a CSV edge list (e.g. Nezha's dependency.csv; rows
    whose target is an IP address give the source's host instead of a call)."""
    from confluent_kafka import KafkaException
    from pydantic import ValidationError

    from omnistream.stream.topics import client_config, ensure_topics, refused
    from omnistream.topology.graph import TopologyFileError, publish, read_edge_list

    try:
        topology = read_edge_list(file, system, version, valid_from)
    except (TopologyFileError, ValidationError) as exc:
        detail = f"{file}: " + "; ".join(e["msg"] for e in exc.errors()) if isinstance(exc, ValidationError) \
            else str(exc)
        raise typer.BadParameter(detail) from None
    for remark in topology.remarks():
        console.print(f"[yellow]{escape(remark)}[/]")
    if dry_run:
        print(topology.model_dump_json(indent=2))
        return
    settings = _settings(config, bootstrap, prefix)
    try:
        ensure_topics(settings)
        publish(topology, client_config(settings), settings.topic("topology"))
    except KafkaException as exc:
        console.print(_kafka_failure(exc, settings.kafka.bootstrap))
        raise typer.Exit(2 if refused(exc) else EX_TEMPFAIL) from None
    console.print(f"published {system} version {topology.version}: {len(topology.nodes)} nodes, "
                  f"{len(topology.edges)} edges -> {settings.topic('topology')}")


@app.command()
def schemas(out: Annotated[Path, typer.Option(help="folder for the JSON Schema files")] = Path("schemas")) -> None:
    """Write the JSON Schema of every topic's messages, for consumers."""
    from omnistream.stream.records import json_schemas

    out.mkdir(parents=True, exist_ok=True)
    for topic, schema in json_schemas().items():
        (out / f"{topic}.schema.json").write_text(json.dumps(schema, indent=2))
    console.print(f"wrote {len(json_schemas())} schemas to {out}")


@app.command()
def demo(speed: Annotated[float, typer.Option(help="data seconds per wall second; 0 = as fast as possible")] = 30000.0,
         limit: Annotated[int, typer.Option(help="points per entity to replay")] = 4320) -> None:
    """Broker + bundled ASD data + worker + live anomaly events, then a clean stop.

    Uses the local broker on $OMNISTREAM_KAFKA_PORT (9092 by default), starting and stopping
    it unless it is already running."""
    from omnistream.cli.demo import run_demo

    raise typer.Exit(run_demo(speed=speed, limit=limit, console=Console()))


def main() -> None:
    from omnistream.stream.logs import make_readable

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Every command thins repeated warnings: a Kafka client waiting for an absent broker logs
    # each failed connection (about 20 lines a second) until its first answer.
    make_readable(logging.getLogger().handlers, json_lines=False)
    app()


if __name__ == "__main__":
    main()
