"""The collector formats' cost in the stream layer: records/s, metric values/s and points/s of
decode -> map -> internal topic packing -> assembly, for single-metric messages (Telegraf JSON,
line protocol, prometheus-kafka-adapter) and OTLP batches, against the same data in
omnistream's own multi-metric records (validate -> pack -> unpack), measured in the same run.

In process, without the broker: what is measured is the work each format adds per metric
value. Through the live worker, each Kafka message also costs Faust's per-message overhead,
which single-metric formats pay once per value (see the README's throughput section).

    python bench/formats.py [--entities 12] [--points 400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import orjson
from timing import best_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from collectors import influx_lines, otlp_json, otlp_proto, prometheus_json, telegraf_json

from omnistream.ingest.assemble import Assembler
from omnistream.ingest.decode import decode_message
from omnistream.ingest.mapping import Mapping, SourceSettings
from omnistream.offline.datasets import load_asd, metric_names
from omnistream.stream.points import pack_points, pack_samples, unpack_points
from omnistream.stream.records import parse_metric_record

STEP = 300.0
START = 1_700_000_100.0  # on the step grid
MAX_TS = 4e9
FORMATS = {  # writer, mapping
    "telegraf_json": (lambda r: telegraf_json(r, jitter=5), {"name_template": "{field}"}),
    "influx_line": (lambda r: influx_lines(r, jitter=5), {"name_template": "{field}"}),
    "prometheus_json": (lambda r: prometheus_json(r, jitter=5), {"entity": ["instance"]}),
    "otlp_proto": (lambda r: otlp_proto(r, jitter=5, per_request=50), {"entity": ["service.name"]}),
    "otlp_json": (lambda r: otlp_json(r, jitter=5, per_request=50), {"entity": ["service.name"]}),
}


def records(entities: int, points: int) -> list[dict]:
    series = [s.test for s in load_asd()][:entities]
    names = metric_names(series[0].shape[1])
    return [{"entity": f"e{e}", "ts": START + STEP * i,
             "metrics": dict(zip(names, series[e % len(series)][i].tolist()))}
            for i in range(points) for e in range(entities)]


def native(messages: list[bytes], batch: int = 2000) -> int:
    """Validate, pack onto the internal topic, unpack: points out."""
    out = 0
    for start in range(0, len(messages), batch):
        valid: dict[str, list] = defaultdict(list)
        for value in messages[start:start + batch]:
            record = parse_metric_record(value, None, "metrics")
            valid[record.entity].append((record.ts, record.metrics))
        packed = [(m, 0, 0) for entity, pts in valid.items() for m in pack_points(entity, "metrics", pts)]
        out += len(unpack_points(packed)[0])
    return out


def collected(messages: list[bytes], source: SourceSettings, batch: int = 2000) -> int:
    """Decode, map, pack onto the internal topic, unpack, assemble: points out."""
    mapping, assembler, out, offset = Mapping(source), Assembler({source.topic: source}, lambda key: None), 0, 0
    for start in range(0, len(messages), batch):
        mapped: dict[str, list] = defaultdict(list)
        for value in messages[start:start + batch]:
            samples, errors = decode_message(value, mapping, MAX_TS)
            assert not errors, errors[:3]
            for s in samples:
                mapped[s.entity].append(s)
        packed = [(m, 0, offset + i) for i, (entity, samples) in enumerate(mapped.items())
                  for m in pack_samples(entity, None, source.topic, samples)]
        offset += len(packed)
        for m in unpack_points(packed)[1]:
            out += len(assembler.add(m.entity, m.source, m.partition, m.offset, m.samples).points)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=12)
    parser.add_argument("--points", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    recs = records(args.entities, args.points)
    values = sum(len(r["metrics"]) for r in recs)
    own = [orjson.dumps(r) for r in recs]
    seconds = best_of(lambda: native(own), args.repeat)
    per_value = seconds / values
    print(f"{len(recs)} records of {args.entities} entities, {values} metric values; best of {args.repeat}\n")
    print(f"{'format':<16} {'messages':>9} {'msg/s':>10} {'values/s':>11} {'points/s':>10} {'cost per value':>15}")
    print(f"{'omnistream':<16} {len(own):>9} {len(own) / seconds:>10,.0f} {values / seconds:>11,.0f} "
          f"{len(recs) / seconds:>10,.0f} {'1.00x':>15}")
    for fmt, (write, mapping) in FORMATS.items():
        messages = write(recs)
        source = SourceSettings(topic=fmt, format=fmt, step_seconds=STEP, lateness_seconds=STEP, **mapping)
        points = collected(messages, source)
        seconds = best_of(lambda m=messages, s=source: collected(m, s), args.repeat)
        print(f"{fmt:<16} {len(messages):>9} {len(messages) / seconds:>10,.0f} {values / seconds:>11,.0f} "
              f"{points / seconds:>10,.0f} {seconds / values / per_value:>14.2f}x")


if __name__ == "__main__":
    main()
