"""The `omnistream` command: broker, worker, replay, record, fit, evaluate, bench, demo, schemas."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from omnistream.cli.checkout import checkout_file

app = typer.Typer(help="Streaming anomaly detection for many cloud entities on Kafka.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_show_locals=False)
console = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML/TOML config file (else $OMNISTREAM_CONFIG)")]
BootstrapOpt = Annotated[Optional[str], typer.Option(help="Kafka bootstrap servers [default: 127.0.0.1:9092]")]
PrefixOpt = Annotated[Optional[str], typer.Option(help="topic name prefix [default: none]")]
EntitiesOpt = Annotated[Optional[str], typer.Option(help="comma-separated entity ids [default: all]")]


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


@app.command()
def broker(action: Annotated[str, typer.Argument(help="start | stop | status | fetch | reset")]) -> None:
    """Run the local single-node Apache Kafka broker (KRaft; jars from Maven Central)."""
    if action not in ("start", "stop", "status", "fetch", "reset"):
        raise typer.BadParameter("action must be start, stop, status, fetch or reset")
    raise typer.Exit(subprocess.call([str(_checkout_file("deploy", "kafka", "broker.sh")), action]))


@app.command()
def worker(config: ConfigOpt = None, bootstrap: BootstrapOpt = None, prefix: PrefixOpt = None,
           model_dir: Annotated[Optional[Path], typer.Option(help="folder of exported models [default: models-store]")] = None,
           stride: Annotated[Optional[int], typer.Option(help="score every N-th point of an entity [default: 1]")] = None,
           device: Annotated[Optional[str], typer.Option(help="auto | cpu | cuda [default: auto]")] = None,
           metrics_port: Annotated[Optional[int], typer.Option(help="Prometheus port, 0 = off [default: 0]")] = None,
           loglevel: Annotated[str, typer.Option(help="debug | info | warning")] = "info") -> None:
    """Consume metric topics, score windows with the models, publish anomaly events."""
    from confluent_kafka import KafkaException
    from faust.worker import Worker

    from omnistream.stream.app import create_app
    from omnistream.stream.topics import ensure_topics

    window = {"stride": stride} if stride else None
    settings = _settings(config, bootstrap, prefix, model_dir=model_dir, device=device, metrics_port=metrics_port,
                         **({"window": window} if window else {}))
    try:
        ensure_topics(settings)
    except KafkaException as exc:
        console.print(f"[red]cannot reach Kafka at {settings.kafka.bootstrap}[/]: {exc}")
        raise typer.Exit(2) from None
    faust_app = create_app(settings)
    Worker(faust_app, loglevel=loglevel.upper()).execute_from_commandline()


@app.command()
def replay(file: Annotated[Optional[Path], typer.Argument(help="JSON-lines file of metric records")] = None,
           dataset: Annotated[Optional[str], typer.Option(help="asd | smd instead of a file")] = None,
           split: Annotated[str, typer.Option(help="train | test")] = "test",
           entities: EntitiesOpt = None,
           limit: Annotated[Optional[int], typer.Option(help="at most N points per entity")] = None,
           speed: Annotated[float, typer.Option(help="data seconds per wall second; 0 = as fast as possible")] = 0.0,
           shared_topic: Annotated[bool, typer.Option(help="one keyed `metrics` topic instead of metrics.<entity>")] = False,
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


@app.command()
def fit(dataset: Annotated[str, typer.Option(help="asd | smd")] = "asd", entities: EntitiesOpt = None,
        out: Annotated[Path, typer.Option(help="model folder the worker reads")] = Path("models-store"),
        epochs: Annotated[int, typer.Option(help="training epochs (early stopping may end sooner)")] = 30,
        train_stride: Annotated[int, typer.Option(help="stride between training windows")] = 2) -> None:
    """Train one DC-VAE per entity on its history and export it for the worker."""
    from omnistream.detectors.dcvae import DCVAEConfig
    from omnistream.offline.evaluate import run

    run(dataset, _split(entities), DCVAEConfig(epochs=epochs), train_stride, out / "report", out, console)


@app.command()
def evaluate(dataset: Annotated[str, typer.Option(help="asd | smd")] = "asd", entities: EntitiesOpt = None,
             epochs: Annotated[int, typer.Option(help="training epochs (early stopping may end sooner)")] = 30,
             train_stride: Annotated[int, typer.Option(help="stride between training windows")] = 2,
             out: Annotated[Path, typer.Option(help="folder for report.json and scores.png")] = Path("reports/evaluate"),
             export: Annotated[Optional[Path], typer.Option(help="also export the models to this folder")] = None) -> None:
    """Train per entity, score the test split, print best F1 (with/without point-adjust)."""
    from omnistream.detectors.dcvae import DCVAEConfig
    from omnistream.offline.evaluate import run

    run(dataset, _split(entities), DCVAEConfig(epochs=epochs), train_stride, out, export, Console())


@app.command()
def bench() -> None:
    """Benchmarks (kernels; end to end when a broker answers on 127.0.0.1:9092), as ratios from the same run."""
    raise typer.Exit(subprocess.call([sys.executable, str(_checkout_file("bench", "run.py"))]))


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
