"""Topologies: read from a CSV edge list (Nezha's dependency.csv among them), validated as the
`topology` message, turned into the adjacency a system model reads."""

import json
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from omnistream.stream.records import Topology, json_schemas
from omnistream.topology.graph import TopologyFileError, adjacency, read_edge_list


def _nezha_dependency(tmp_path):
    from omnistream.offline.datasets import nezha_files

    return nezha_files()[0] / "rca_data" / "2022-08-22" / "metric" / "dependency.csv"


def test_nezha_dependency_csv_gives_calls_and_hosts(tmp_path):
    topology = read_edge_list(_nezha_dependency(tmp_path), "online-boutique", "2022-08-22", 1661140279.0)
    assert len(topology.edges) == 14 and len(topology.nodes) == 11  # 10 services with metrics + loadgenerator
    assert topology.attributes["frontend"] == {"host": "33.33.33.167"}
    assert topology.attributes["loadgenerator"] == {"host": ["33.33.33.79", "33.33.33.60"]}
    assert not any(target.startswith("33.") for _, target, _ in topology.edges)
    order = sorted(topology.nodes)
    a = adjacency(topology, order)
    assert a.shape == (11, 11) and a.sum() == 14
    assert a[order.index("frontend"), order.index("checkoutservice")] == 1  # caller row, callee column
    assert a[order.index("checkoutservice"), order.index("frontend")] == 0


def test_adjacency_sums_repeats_and_drops_loops_and_unknown_nodes():
    t = Topology(system="s", version="1", valid_from=1, ts=1, nodes=["a", "b", "c"],
                 edges=[("a", "b", 1.0), ("a", "b", 2.0), ("b", "b", 5.0), ("b", "c", 1.0)])
    assert t.remarks() == ["self-loops ignored (every node keeps its own state anyway): b",
                           "1 edges given more than once: their weights are summed"]
    assert adjacency(t, ["a", "b"]).tolist() == [[0.0, 3.0], [0.0, 0.0]]


@pytest.mark.parametrize("fields, message", [
    (dict(nodes=[]), "at least 1 item"),
    (dict(edges=[("a", "z", 1.0)]), "a -> z names a node that is not in nodes"),
    (dict(edges=[("a", "b", 0.0)]), "must be finite and positive"),
    (dict(edges=[("a", "b", float("nan"))]), "must be finite and positive"),
    (dict(nodes=["a", "a"]), "more than once"),
    (dict(nodes=["a b"]), "is not 1-200 letters"),
    (dict(attributes={"q": {"host": "h"}}), "attributes of nodes not in nodes"),
])
def test_bad_topologies_are_refused_with_the_reason(fields, message):
    with pytest.raises(ValidationError, match=message):
        Topology(**{"system": "s", "version": "1", "valid_from": 1, "ts": 1, "nodes": ["a", "b"], **fields})


def test_edge_list_files_that_cannot_be_read(tmp_path):
    bad = tmp_path / "e.csv"
    bad.write_text("from,to\na,b\n")
    with pytest.raises(TopologyFileError, match="has no source / caller / src column"):
        read_edge_list(bad, "s")
    bad.write_text("caller,callee,weight\na,b,heavy\n")
    with pytest.raises(TopologyFileError, match="line 2 is not source,target"):
        read_edge_list(bad, "s")
    with pytest.raises(TopologyFileError, match="No such file"):
        read_edge_list(tmp_path / "none.csv", "s")
    bad.write_text("Caller,Callee\na,b\nb,a\n")  # a cycle is an ordinary call graph
    assert read_edge_list(bad, "s").edges == [("a", "b", 1.0), ("b", "a", 1.0)]


def test_topology_has_a_json_schema_and_a_publish_command(tmp_path):
    assert json_schemas()["topology"]["title"] == "Topology"
    edges = tmp_path / "deps.csv"
    edges.write_text("source,target,weight\nweb,db,2\nweb,10.0.0.7,1\n")
    result = subprocess.run([sys.executable, "-m", "omnistream.cli.main", "topology", "publish", str(edges),
                             "--system", "shop", "--version", "v1", "--valid-from", "1700000000", "--dry-run"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    message = Topology.model_validate(json.loads(result.stdout))
    assert message.system == "shop" and message.edges == [("web", "db", 2.0)]
    assert message.attributes == {"web": {"host": "10.0.0.7"}} and message.valid_from == 1700000000
    edges.write_text("source,target\nweb,web db\n")
    result = subprocess.run([sys.executable, "-m", "omnistream.cli.main", "topology", "publish", str(edges),
                             "--system", "shop", "--dry-run"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not 1-200 letters" in result.stdout + result.stderr
    assert np.isfinite(message.ts)
