"""W-HAC at fleet scale: time and peak memory of `cluster_entities` for 1k, 5k and 10k
synthetic periodic entities (100k with --large), each size in its own process.

Reference in the same run: the direct scheme (every segment in one n x n distance matrix)
at the sizes where it fits, against the two-level scheme (a sample clustered, the rest
assigned to the nearest centroid). The direct scheme needs about 16 n^2 bytes (the square
matrix, its condensed copy, scipy's working copy), so on 24 GB it stops near 38k segments;
the two-level scheme is linear in the number of segments.
Prints a table; `--json PATH` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

POINTS = 240  # 4 segments of 60 per entity
FAMILIES = 4


def one(entities: int, direct_limit: int) -> dict:
    import numpy as np

    from omnistream import kernels
    from omnistream.transfer.synthetic import fleet
    from omnistream.transfer.whac import ClusterConfig, cluster_entities

    x, family = fleet(entities, POINTS, metrics=4, families=FAMILIES, seed=0)
    data = {f"e{i}": x[i] for i in range(entities)}
    del x
    started = time.perf_counter()
    registry = cluster_entities(data, ["a", "b", "c", "d"],
                                ClusterConfig(max_period=100, direct_limit=direct_limit, max_clusters=8))
    seconds = time.perf_counter() - started
    got = np.array([registry.entities[f"e{i}"] for i in range(entities)])
    agreement = sum(np.bincount(got[family == f]).max() for f in np.unique(family)) / entities
    return {"entities": entities, "segments": registry.info["segments"],
            "clustered_directly": registry.info["clustered_directly"], "clusters": registry.count,
            "family_agreement": round(float(agreement), 4), "seconds": round(seconds, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "timings_s": registry.info["timings_s"], "backend": kernels.BACKEND_NAME}


def measure(entities: int, direct_limit: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(entities), "--direct-limit", str(direct_limit)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="also 100k entities (400k segments)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--direct-limit", type=int, default=8000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.direct_limit)))
        return
    rows = []
    # Reference: the direct scheme where it fits, next to the two-level scheme on the same data.
    for entities in (500, 1000, 2000):
        direct = measure(entities, 10 ** 9)
        two_level = measure(entities, 2000)
        rows += [{**direct, "scheme": "direct"},
                 {**two_level, "scheme": "two-level (2000 sampled)",
                  "vs_direct_time": round(two_level["seconds"] / direct["seconds"], 3)}]
    for entities in (1000, 5000, 10000) + ((100000,) if args.large else ()):
        rows.append({**measure(entities, 8000), "scheme": "two-level (8000 sampled)"})
    print(f"{'scheme':<26}{'entities':>9}{'segments':>10}{'direct':>8}{'clusters':>9}{'agree':>7}{'seconds':>9}"
          f"{'peak MB':>9}{'vs direct':>10}")
    for r in rows:
        print(f"{r['scheme']:<26}{r['entities']:>9}{r['segments']:>10}{r['clustered_directly']:>8}{r['clusters']:>9}"
              f"{r['family_agreement']:>7.2f}{r['seconds']:>9.2f}{r['peak_rss_mb']:>9.0f}"
              f"{r.get('vs_direct_time', ''):>10}")
    print(f"kernel backend: {rows[0]['backend']}; direct HAC needs ~16 n^2 bytes: about "
          f"{(24e9 / 16) ** 0.5 / 1000:.0f}k segments on 24 GB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
