"""The worker's view of the topologies: latest graph per system, membership, refusals."""

from omnistream.stream.records import Topology
from omnistream.topology.registry import TopologyRegistry


def topology(system="shop", nodes=("api", "db"), edges=(("api", "db", 1.0),), version="1"):
    return Topology(system=system, version=version, valid_from=0, ts=0, nodes=list(nodes), edges=list(edges))


def test_latest_graph_membership_and_changes():
    registry = TopologyRegistry()
    assert registry.apply(topology()).changed
    assert not registry.apply(topology(version="2")).changed  # same graph, new version: nothing to redo
    assert registry.systems_of("db") == ["shop"] and registry.systems_of("cache") == []
    applied = registry.apply(topology(nodes=("api", "db", "cache"), edges=(("api", "cache", 1.0),)))
    assert applied.changed and registry.systems_of("cache") == ["shop"]
    applied = registry.apply(topology(system="billing", nodes=("db", "ledger"), edges=()))
    assert "entities in more than one system (each system scores them): db" in applied.remarks
    assert registry.systems_of("db") == ["billing", "shop"]
    assert registry.remove("billing") and not registry.remove("billing")
    assert registry.systems_of("db") == ["shop"]


def test_an_oversized_topology_is_refused_and_the_previous_graph_kept():
    registry = TopologyRegistry(max_nodes=3)
    registry.apply(topology())
    huge = topology(nodes=[f"n{i}" for i in range(10_000)], edges=())
    applied = registry.apply(huge)
    assert applied.refused.startswith("10000 nodes, over topology.max_nodes (3)") and not applied.changed
    assert registry.get("shop").nodes == ["api", "db"]
