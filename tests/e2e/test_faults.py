"""Faults injected on a real broker, each compared score by score with the in-process
reference: a killed worker, a broker outage, a second worker joining and dying (its partitions
move back), and poisoned records among good ones. 0 missing, 0 extra, 0 changed, for the
entities' events and scores and for those of the system they form.

The longer outages (60 s, 5 min) run with ``make test-faults``."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
import urllib.request

from pathlib import Path

import orjson
import pytest
from collectors import influx_lines
from confluent_kafka import Producer
from faults import (ENTITIES, START_TS, assert_exact, collect, fleet_models, fleet_records, publish_system, read_all,
                    reference, report, score_key)
from streams import BROKER, broker_env, consume, start_worker, stopped_by_sigterm

from omnistream.cli.replay import replay

pytestmark = pytest.mark.e2e
POINTS = 240  # per entity: 8 entities, about 1,700 scores
ENV = {"OMNISTREAM_DECIDE__PUBLISH_SCORES": "true", "OMNISTREAM_KAFKA__PROBE_EVERY": "2",
       "OMNISTREAM_KAFKA__STALL_AFTER": "20"}


def _scores_so_far(bootstrap, prefix, at_least, timeout=120):
    return consume(bootstrap, f"{prefix}scores", lambda m: len(m) >= at_least, timeout)


def _entered(port: int) -> dict[str, float]:
    """How often the worker process has entered each state (omnistream_worker_state_changes_total):
    what it recorded, whenever this asks; nothing while no process answers (a restart)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return {}
    prefix = 'omnistream_worker_state_changes_total{state="'
    return {line[len(prefix):].split('"')[0]: float(line.split()[-1]) for line in text.splitlines()
            if line.startswith(prefix)}


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.5)


@pytest.fixture
def fleet(trained_models, tmp_path):
    return fleet_models(trained_models, tmp_path / "models")


@pytest.fixture
def workers(kafka_bootstrap, topic_prefix, fleet, tmp_path):
    publish_system(kafka_bootstrap, topic_prefix)
    started = []

    def make(name: str = "a", metrics_port: int = 0, **env: str):
        (tmp_path / name).mkdir()
        w = start_worker(kafka_bootstrap, topic_prefix, fleet, tmp_path / name, metrics_port, {**ENV, **env})
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


def _child(parent_pid: int) -> int:
    """The Faust worker process under the restarting `omnistream worker` command."""
    return int(Path(f"/proc/{parent_pid}/task/{parent_pid}/children").read_text().split()[0])


def _restarts(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith("omnistream_worker_restarts "))


def test_sigkilled_worker_resumes_from_its_changelog(kafka_bootstrap, topic_prefix, fleet, asd_series, workers):
    records = fleet_records(asd_series, 0, POINTS)
    expected = reference(fleet, records)
    config = {"bootstrap.servers": kafka_bootstrap}
    replay(records[: len(records) // 2], config, topic_prefix)
    worker = workers().start()
    _scores_so_far(kafka_bootstrap, topic_prefix, 300)
    worker.kill()  # the whole command, mid-stream, with no warning: nothing committed since the last commit
    replay(records[len(records) // 2:], config, topic_prefix)
    killed = time.monotonic()
    worker.start()
    ready = time.monotonic() - killed
    events, scores = collect(kafka_bootstrap, topic_prefix, expected)
    report("worker SIGKILL", events, scores, kafka_bootstrap, topic_prefix, ready_again_s=ready)
    assert_exact(events, scores)
    assert ready < 30


def test_a_worker_killed_mid_step_of_collector_input_loses_and_repeats_nothing(kafka_bootstrap, topic_prefix,
                                                                              fleet, asd_series, workers):
    """Line protocol, one metric per message, keyed by host (Telegraf's routing_tag): the kill
    falls inside a step, whose samples are half assembled; the restart resumes from the saved
    open steps and the offset they were applied to."""
    records = [{**r, "ts": math.floor(r["ts"] / 60) * 60} for r in fleet_records(asd_series, 0, POINTS)]
    expected = reference(fleet, records[: -2 * len(ENTITIES)])  # the last two steps wait for later samples
    topic = f"{topic_prefix}telegraf"
    source = {"topic": topic, "format": "influx_line", "step_seconds": 60, "lateness_seconds": 60,
              "name_template": "{field}"}
    worker = workers(OMNISTREAM_SOURCES=orjson.dumps([source]).decode()).start()
    lines = influx_lines(records)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})

    def send(values: list[bytes]) -> None:
        for value in values:
            producer.produce(topic, value=value, key=value.split(b"host=", 1)[1].split(b" ", 1)[0])
            producer.poll(0)
        assert producer.flush(60) == 0

    middle = len(lines) // 2 + 7  # part of one entity's metrics of a step
    send(lines[:middle])
    _scores_so_far(kafka_bootstrap, topic_prefix, 300)
    worker.kill()
    send(lines[middle:])
    worker.start()
    events, scores = collect(kafka_bootstrap, topic_prefix, expected)
    report("worker SIGKILL mid-step of collector input", events, scores, kafka_bootstrap, topic_prefix)
    assert_exact(events, scores)


def _half_way(kafka_bootstrap, topic_prefix, fleet, asd_series, workers, port: int):
    """The fleet's records, the events and scores they should give, the client config, and a
    worker (metrics on ``port``) that has scored part of the first half, replayed before it started."""
    records = fleet_records(asd_series, 0, POINTS)
    expected = reference(fleet, records)
    config = {"bootstrap.servers": kafka_bootstrap}
    replay(records[: len(records) // 2], config, topic_prefix)
    worker = workers(metrics_port=port).start()
    _scores_so_far(kafka_bootstrap, topic_prefix, 300)
    return records, expected, config, worker


def test_a_crashed_faust_worker_is_restarted_by_the_command(kafka_bootstrap, topic_prefix, fleet, asd_series,
                                                            workers):
    records, expected, config, worker = _half_way(kafka_bootstrap, topic_prefix, fleet, asd_series, workers, 19114)
    os.kill(_child(worker.proc.pid), signal.SIGKILL)  # only the Faust worker: the command restarts it
    killed = time.monotonic()
    replay(records[len(records) // 2:], config, topic_prefix)
    later = START_TS + 60 * (POINTS // 2)
    consume(kafka_bootstrap, f"{topic_prefix}scores", lambda m: any(orjson.loads(x.value())["ts"] >= later for x in m),
            180)
    scoring_again = time.monotonic() - killed
    events, scores = collect(kafka_bootstrap, topic_prefix, expected)
    report("Faust worker SIGKILL, restarted by the command", events, scores, kafka_bootstrap, topic_prefix,
           scoring_again_s=scoring_again, restarts=_restarts(19114))
    assert_exact(events, scores)
    assert worker.running() and _restarts(19114) >= 1  # a stall found after the restart adds one (stream.progress)


def test_a_killed_ingest_process_takes_the_worker_down_and_both_come_back(kafka_bootstrap, topic_prefix, fleet,
                                                                          asd_series, workers):
    """The ingest hop's own process (stream.ingest_process) SIGKILLed mid-stream: the worker
    ends with it, the command starts both again, and the events are those of an undisturbed run."""
    records, expected, config, worker = _half_way(kafka_bootstrap, topic_prefix, fleet, asd_series, workers, 19115)
    os.kill(_child(_child(worker.proc.pid)), signal.SIGKILL)  # command -> Faust worker -> ingest process
    replay(records[len(records) // 2:], config, topic_prefix)
    events, scores = collect(kafka_bootstrap, topic_prefix, expected)
    report("ingest process SIGKILL", events, scores, kafka_bootstrap, topic_prefix, restarts=_restarts(19115))
    assert_exact(events, scores)
    assert worker.running() and _restarts(19115) >= 1
    assert "the ingest process ended (exit code 137)" in worker.log_path.read_text(errors="replace")


def _broker(action: str) -> None:
    subprocess.run([str(BROKER), action], check=True, env=broker_env(), timeout=300)


def _outage(kafka_bootstrap, topic_prefix, fleet, asd_series, workers, seconds: float, port: int):
    records = fleet_records(asd_series, 0, POINTS)
    expected = reference(fleet, records)
    config = {"bootstrap.servers": kafka_bootstrap}
    worker = workers(metrics_port=port).start()
    replay(records[: len(records) // 3], config, topic_prefix)
    _scores_so_far(kafka_bootstrap, topic_prefix, 200)
    log_before = worker.log_path.stat().st_size
    before, restarts_before = _entered(port), _restarts(port)
    _broker("stop")
    down = time.monotonic()
    # The outage lasts ``seconds``, and at least until the worker has recorded it (its probe runs
    # every 2 s here, each check waiting up to 2 s): what is asserted is what it recorded.
    _wait_for(lambda: _entered(port).get("broker_unreachable", 0) > before.get("broker_unreachable", 0), 60,
              "the worker should record the outage")
    time.sleep(max(0.0, seconds - (time.monotonic() - down)))
    lines = worker.log_path.read_bytes()[log_before:].count(b"\n")
    _broker("start")
    up = time.monotonic()
    replay(records[len(records) // 3:], config, topic_prefix)
    later = START_TS + 60 * (POINTS // 3)
    consume(kafka_bootstrap, f"{topic_prefix}scores",
            lambda m: any(orjson.loads(x.value())["ts"] >= later for x in m), 180)
    scoring_again = time.monotonic() - up  # from the broker's return to the first score of new data
    assert worker.running(), worker.tail()
    def runs_again() -> bool:
        """It recorded running again since the outage; a process the command restarted (the
        Kafka client may abort as a broker returns) counts afresh from its own start."""
        now = _entered(port)
        try:
            restarted = bool(now) and _restarts(port) > restarts_before
        except OSError:  # the process went away between the two reads
            return False
        if restarted:
            return now.get("running", 0) >= 1
        return now.get("running", 0) > before.get("running", 0)

    _wait_for(runs_again, 60, "the worker should record that it runs again")
    events, scores = collect(kafka_bootstrap, topic_prefix, expected)
    report(f"broker outage {seconds:.0f} s", events, scores, kafka_bootstrap, topic_prefix,
           scoring_again_s=scoring_again, log_lines=lines,
           restarts=_restarts(port))
    assert_exact(events, scores)
    assert scores.duplicated == 0 and events.duplicated == 0
    assert lines < 60 + seconds / 6, "the log should stay readable during an outage"  # a few lines a minute


def test_sigterm_ends_the_worker_within_its_deadline_while_the_broker_is_down(kafka_bootstrap, workers):
    worker = workers(OMNISTREAM_SHUTDOWN_SECONDS="5").start()
    code, took = stopped_by_sigterm(worker.proc, 5)
    assert code == 0 and took < 5 + 5, (took, worker.tail())


def test_worker_rides_out_a_broker_outage(kafka_bootstrap, topic_prefix, fleet, asd_series, workers):
    _outage(kafka_bootstrap, topic_prefix, fleet, asd_series, workers, 10.0, 19111)


@pytest.mark.faults_slow
@pytest.mark.parametrize("seconds", [60.0, 300.0])
def test_worker_rides_out_a_long_broker_outage(kafka_bootstrap, topic_prefix, fleet, asd_series, workers, seconds):
    _outage(kafka_bootstrap, topic_prefix, fleet, asd_series, workers, seconds, 19112)


def test_partitions_move_to_a_second_worker_and_back(kafka_bootstrap, topic_prefix, fleet, asd_series, workers):
    thirds = [fleet_records(asd_series, POINTS * i // 3, POINTS * (i + 1) // 3) for i in range(3)]
    expected = reference(fleet, [r for part in thirds for r in part])
    config = {"bootstrap.servers": kafka_bootstrap}
    first = workers("a").start()
    replay(thirds[0], config, topic_prefix)
    _scores_so_far(kafka_bootstrap, topic_prefix, 200)
    second = workers("b").start()  # the group rebalances: some partitions move to it
    replay(thirds[1], config, topic_prefix)
    _scores_so_far(kafka_bootstrap, topic_prefix, 1000)
    second.kill()  # its partitions move back to the first worker after the session timeout
    killed = time.monotonic()
    replay(thirds[2], config, topic_prefix)
    last_ts = START_TS + 60 * (POINTS - 1)
    consume(kafka_bootstrap, f"{topic_prefix}scores",
            lambda m: {e for e, ts in map(score_key, map(orjson.loads, (x.value() for x in m))) if ts == last_ts}
            >= set(ENTITIES), 180)
    taken_over = time.monotonic() - killed
    events, scores = collect(kafka_bootstrap, topic_prefix, expected)
    report("second worker joins, is killed, partitions move back", events, scores, kafka_bootstrap, topic_prefix,
           all_scored_again_s=taken_over)
    assert first.running()
    assert_exact(events, scores)
    assert taken_over < 30


def _poison() -> list[tuple[str, bytes | None, bytes, str]]:
    """(class, key, value, expected DLQ reason) of the bad records mixed into the stream."""
    good = {"m00": 1.0}
    entity = ENTITIES[0]
    now = START_TS + 60 * 100

    def rec(**fields) -> bytes:
        return orjson.dumps({"entity": entity, "ts": now, "metrics": good} | fields)

    return [
        ("not JSON", None, b"{not json", "record"),
        ("oversized (300 kB)", entity.encode(),
         b'{"entity": "x", "metrics": {"m": 1}, "pad": "' + b"x" * 300_000 + b'"}',
         "size"),
        ("ts 1e308", None, rec(ts=1e308), "ts"),
        ("ts a huge integer", None, rec(ts=0).replace(b'"ts":0', b'"ts":' + b"9" * 400), "ts"),
        ("ts in 2100", None, rec(ts=4_102_444_800.0), "ts"),
        ("ts not a number", None, rec(ts="yesterday"), "ts"),
        ("value 1e308", None, rec(metrics={"m00": 1e308}), "metrics"),
        ("value a string", None, rec(metrics={"m00": "high"}), "metrics"),
        ("entity with a control character", None, rec(entity="svc\x00x"), "entity"),
        ("entity with a bidi override", None, rec(entity="svc\u202ex"), "entity"),
        ("entity with a zero-width space", None, rec(entity="svc\u200bx"), "entity"),
        ("entity of 300 characters", None, rec(entity="s" * 300), "entity"),
        ("100 kB key, no entity", b"k" * 100_000, orjson.dumps({"ts": now, "metrics": good}), "entity"),
        ("1,200 metrics", None, rec(metrics={f"m{i}": 1.0 for i in range(1200)}), "metrics"),
        ("2,000 bad metric names", None, rec(metrics={f"bad name {i}": 1.0 for i in range(2000)}), "metrics"),
        ("empty record", entity.encode(), b"", "record"),
    ]


def test_poisoned_records_are_dead_lettered_and_change_nothing(kafka_bootstrap, topic_prefix, fleet, asd_series,
                                                               workers):
    records = fleet_records(asd_series, 0, POINTS)
    expected = reference(fleet, records)
    config = {"bootstrap.servers": kafka_bootstrap}
    workers(metrics_port=19113, OMNISTREAM_RECORDS__MAX_BYTES="200000").start()
    poison = _poison()
    half = len(records) // 2
    replay(records[:half], config, topic_prefix)
    producer = Producer(config)
    for _, key, value, _ in poison:
        producer.produce(f"{topic_prefix}metrics", value=value, key=key)
    producer.flush(30)
    replay(records[half:], config, topic_prefix)
    events, scores = collect(kafka_bootstrap, topic_prefix, expected)
    report("poisoned records", events, scores, kafka_bootstrap, topic_prefix, poison_records=len(poison))
    assert_exact(events, scores)

    dead = read_all(kafka_bootstrap, f"{topic_prefix}metrics-dlq")
    assert len(dead) == len(poison)
    by_value = {}
    for m in dead:
        headers = dict(m.headers())
        assert len(m.value() or b"") <= 65_536 and len(m.key() or b"") <= 65_536  # truncated copies fit any broker
        by_value[int(headers["source.bytes"]), m.value() or b""] = headers["error"].decode()
    for name, _, value, reason in poison:
        error = by_value[len(value), value[:65_536]]
        assert error.split(":")[0].split(".")[0] == reason or (reason == "record" and "JSON" in error), (name, error)
    metrics = urllib.request.urlopen("http://127.0.0.1:19113/metrics", timeout=10).read().decode()
    reasons = {line.split('"')[1] for line in metrics.splitlines() if line.startswith("omnistream_records_dlq_total{")}
    assert reasons <= {"entity", "ts", "metrics", "size", "record"}  # bounded labels, whatever the names sent


def _hanging_model(like: Path, to: Path) -> None:
    """A real TorchScript model, with ``like``'s metadata, whose forward never returns: a
    model (or a device) stuck for ever leaves the loop turning and the points partition still."""
    import torch

    from omnistream.detectors.export import METADATA_NAME, load

    class Hang(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            while x.numel() >= 0:
                x = x + 0.0
            return x

    _, info = load(like)
    torch.jit.save(torch.jit.script(Hang()), str(to), _extra_files={METADATA_NAME: info.to_json()})


def test_a_stalled_partition_restarts_the_worker(kafka_bootstrap, topic_prefix, fleet, asd_series, workers):
    entity = ENTITIES[0]
    _hanging_model(fleet / f"{entity}.pt", fleet / f"{entity}.pt")
    for other in ENTITIES[1:]:
        (fleet / f"{other}.pt").unlink()
    worker = workers(metrics_port=19115, OMNISTREAM_KAFKA__STALL_AFTER="10")
    worker.start()
    replay([r for r in fleet_records(asd_series, 0, 80) if r["entity"] == entity],
           {"bootstrap.servers": kafka_bootstrap}, topic_prefix)
    deadline = time.monotonic() + 120
    while b"consumption stalled" not in worker.log_path.read_bytes() and time.monotonic() < deadline:
        time.sleep(1.0)
    log = worker.log_path.read_text(errors="replace")
    stalled = next((line for line in log.splitlines() if "consumption stalled" in line), "")
    assert f"{topic_prefix}omnistream-points[" in stalled, worker.tail()
    while "exited with code 4" not in worker.log_path.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "exited with code 4" in worker.log_path.read_text(errors="replace")  # and the command starts it again
    assert worker.running()
