"""System scoring speed: system windows scored per second by the system detectors on synthetic
systems of 10 and 100 services, against the per-entity scorer of the same run scoring the
same services' windows one entity at a time (each entity by its own model), and the cost of
ranking a system incident's entities (stream.decide.related_entities) per event.

Models are real: each is trained briefly on the synthetic data (speed does not depend on how
well), exported to TorchScript and loaded as the worker loads it (system models unfrozen, so
that the call graph can follow the topology; entity models frozen and optimised). Scoring is
``score_batch``, the worker's own call, in batches of ``--batch`` windows.

    python bench/systems.py [--nodes 10,100] [--metrics 8] [--batch 64] [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from omnistream.offline.fit import Calibration, export_fitted, fit_entity, model_info
from omnistream.offline.fit_system import export_system, fit_system
from omnistream.offline.systems import Fault, SystemSeries
from omnistream.stream.decide import related_entities
from omnistream.stream.records import Topology
from omnistream.stream.scorer import ModelStore, score_batch
from timing import best_of

CONFIGS = {"topomad": dict(window=30, hidden=16, epochs=1), "stdrift": dict(window=12, dim=32, epochs=1)}
ENTITY = ("usad", dict(window=12, epochs=1))


def synthetic_system(nodes: int, metrics: int, length: int, seed: int = 0) -> SystemSeries:
    """Periodic metrics per service and a random call graph of about 2.5 calls per service."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None, None]
    x = (np.sin(2 * np.pi * t / rng.integers(20, 60, (1, nodes, metrics))) +
         0.1 * rng.standard_normal((length, nodes, metrics))).astype(np.float32)
    names = [f"svc-{i:03d}" for i in range(nodes)]
    edges = {(names[i], names[j], 1.0) for i, j in rng.integers(0, nodes, (int(2.5 * nodes), 2)) if i != j}
    topology = Topology(system=f"sys{nodes}", version="1", valid_from=0, ts=0, nodes=names, edges=sorted(edges))
    split = int(length * 0.8)
    return SystemSeries(f"sys{nodes}", names, [f"m{j}" for j in range(metrics)], x[:split], x[split:],
                        np.zeros(length - split, np.int8), np.zeros((length - split, nodes), np.int8), topology,
                        [Fault(0, 1, names[0], "")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="10,100")
    parser.add_argument("--metrics", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def timed(fn) -> float:  # TorchScript optimises a module over its first calls: three go untimed
        return best_of(fn, args.repeat, warm_up=3)

    print(f"torch {torch.__version__}, {args.threads} threads, batches of {args.batch} windows, "
          f"{args.metrics} metrics per service")
    for nodes in [int(n) for n in args.nodes.split(",")]:
        system = synthetic_system(nodes, args.metrics, 600)
        with tempfile.TemporaryDirectory() as folder:
            entity_name, entity_config = ENTITY
            entity = system.entities()[0]
            fitted = fit_entity(entity_name, entity.train, entity_config, Calibration())
            export_fitted(fitted, Path(folder) / "one-entity.pt", model_info(fitted, system.metrics), entity.test)
            for name, config in CONFIGS.items():
                export_system(fit_system(name, system, config), system, folder)
                store = ModelStore(Path(folder), kind="system")
                store.refresh()
                model = store.get(system.system)
                windows = np.random.default_rng(1).standard_normal(
                    (args.batch, model.info.window, nodes * args.metrics)).astype(np.float32)
                seconds = timed(lambda m=model, w=windows: score_batch(m, w, [1] * len(w)))
                entity_store = ModelStore(Path(folder))
                entity_store.refresh()
                one = entity_store.get("one-entity")
                per_entity = windows[:, -one.info.window:].reshape(args.batch, one.info.window, nodes,
                                                                   args.metrics).transpose(0, 2, 1, 3).reshape(
                    args.batch * nodes, one.info.window, args.metrics).copy()
                reference = timed(lambda m=one, w=per_entity: score_batch(m, w, [1] * len(w)))
                per_metric = np.abs(np.random.default_rng(2).standard_normal(nodes * args.metrics))
                ranking = timed(lambda z=per_metric, info=model.info: [related_entities(z, info, 3, 10)
                                                                       for _ in range(100)]) / 100
                rate = args.batch / seconds
                print(f"{nodes:4d} services, {name:8s}: {rate:9.1f} system windows/s "
                      f"({rate * nodes:9.0f} service-windows/s); per-entity {entity_name} scoring the same "
                      f"services: {args.batch * nodes / reference:9.0f} windows/s -> system / per-entity "
                      f"{rate * nodes / (args.batch * nodes / reference):5.2f}x; ranking "
                      f"{ranking * 1e3:.3f} ms per event ({ranking * rate:.1%} of one window's scoring)")


if __name__ == "__main__":
    main()
