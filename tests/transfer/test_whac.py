"""W-HAC on a synthetic fleet with known families: directly and with the two-level scheme,
the registry round trip, matching a new entity, and the errors a user can cause."""

import numpy as np
import pytest

from omnistream.transfer.registry import ClusterRegistry, RegistryError
from omnistream.transfer.synthetic import fleet
from omnistream.transfer.whac import ClusterConfig, cluster_entities, merge_small, silhouette

METRICS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def synthetic():
    x, family = fleet(61, 600, metrics=len(METRICS), families=3, seed=1)
    return {f"e{i:02d}": x[i] for i in range(60)}, family[:60], x[60], family[60]


def _agreement(registry, family):
    """Share of entities whose cluster is their family's majority cluster (label-free match)."""
    got = np.array([registry.entities[f"e{i:02d}"] for i in range(len(family))])
    return sum(np.bincount(got[family == f]).max() for f in np.unique(family)) / len(family), got


@pytest.mark.parametrize("direct_limit", [8000, 150])
def test_families_are_recovered(synthetic, direct_limit):
    data, family, _, _ = synthetic
    registry = cluster_entities(data, METRICS, ClusterConfig(max_period=100, direct_limit=direct_limit))
    agreement, got = _agreement(registry, family)
    assert registry.count == 3
    assert agreement == 1.0 and len(set(got)) == 3
    assert sum(registry.sizes) == 600 and registry.info["clustered_directly"] == min(600, direct_limit)
    assert all(len(n) == 20 for n in registry.nearest)
    # the nearest segments of a cluster come from entities of one family
    for c in range(3):
        assert len({family[int(e[1:])] for e, _ in registry.nearest[c]}) == 1


def test_registry_round_trip_and_matching(synthetic, tmp_path):
    data, family, newcomer, newcomer_family = synthetic
    registry = cluster_entities(data, METRICS, ClusterConfig(max_period=100))
    registry.save(tmp_path)
    loaded = ClusterRegistry.load(tmp_path)
    np.testing.assert_array_equal(loaded.centroids, registry.centroids)
    assert loaded.nearest == registry.nearest and loaded.entities == registry.entities
    cluster, distance = loaded.nearest_cluster(newcomer[:120])  # two segments of a never-seen entity
    siblings = [registry.entities[f"e{i:02d}"] for i in np.flatnonzero(family == newcomer_family)]
    assert cluster == max(set(siblings), key=siblings.count) and distance >= 0
    with pytest.raises(RegistryError, match="fewer than one segment"):
        loaded.nearest_cluster(newcomer[:30])
    with pytest.raises(RegistryError, match="differ from the registry"):
        loaded.nearest_cluster(newcomer[:120], metrics=["a", "b", "c", "x"])
    with pytest.raises(RegistryError, match="run `omnistream cluster`"):
        ClusterRegistry.load(tmp_path / "nothing")


def test_bad_input_is_refused(synthetic):
    data, *_ = synthetic
    with pytest.raises(ValueError, match="same 3 metrics"):
        cluster_entities(data, METRICS[:3])
    with pytest.raises(ValueError, match="no entity has a full segment"):
        cluster_entities({"short": np.ones((10, 4))}, METRICS)


def test_silhouette_and_small_cluster_merge_match_their_definitions():
    points = np.array([0.0, 0.1, 0.2, 5.0, 5.1, 9.0])
    d = np.abs(points[:, None] - points[None, :])
    labels = np.array([1, 1, 1, 2, 2, 3])
    expected = []
    for i in range(6):
        own = labels == labels[i]
        if own.sum() == 1:
            expected.append(0.0)
            continue
        a = d[i, own].sum() / (own.sum() - 1)
        b = min(d[i, labels == k].mean() for k in set(labels) - {labels[i]})
        expected.append((b - a) / max(a, b))
    assert silhouette(d, labels) == pytest.approx(np.mean(expected))
    merged = merge_small(d, labels, min_size=2)
    assert merged.tolist() == [0, 0, 0, 1, 1, 1]  # the lone 9.0 joins the cluster nearest on average
