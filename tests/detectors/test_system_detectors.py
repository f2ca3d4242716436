"""System detectors (TopoMAD, stdrift): the graph matters, a window's level can be ignored on
request, and per-node scores point at the node that misbehaves."""

import numpy as np
import pytest
import torch

from omnistream.detectors.base import point_scores, sliding_windows
from omnistream.detectors.check import synthetic
from omnistream.detectors.graphs import normalised_adjacency
from omnistream.detectors.registry import create

CHAIN = [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
SMALL = {"topomad": dict(window=8, hidden=8, epochs=3, batch_size=64),
         "stdrift": dict(window=8, dim=8, epochs=5, batch_size=64)}


def test_normalised_adjacency_is_symmetric_with_heavier_self_loops():
    a = normalised_adjacency(np.array(CHAIN, dtype=np.float32))
    np.testing.assert_allclose(a, a.T)
    assert a[0, 2] == 0 and a[0, 1] > 0 and a[1, 1] > a[1, 0]  # linked both ways, not to the far end
    np.testing.assert_allclose(normalised_adjacency(np.zeros((2, 2))), np.eye(2))  # no graph: each node alone


@pytest.mark.parametrize("name", SMALL)
def test_the_call_graph_changes_the_scores(name):
    train = synthetic(length=600, metrics=6)
    fitted = create(name, nodes=3, adjacency=CHAIN, **SMALL[name]).fit_series(train)
    module = fitted.scoring_module().eval()
    x = torch.from_numpy(sliding_windows(train[:60], fitted.window).copy())
    with torch.no_grad():
        before = module(x).clone()
        module.net.links.copy_(torch.eye(3))  # what a worker does when the topology changes
        after = module(x)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("name", SMALL)
def test_centred_windows_ignore_the_level_and_find_the_odd_node(name):
    train = synthetic(length=600, metrics=6)
    fitted = create(name, nodes=3, adjacency=CHAIN, centre=True, **SMALL[name]).fit_series(train)
    test = synthetic(length=200, metrics=6, seed=3)
    shifted = test.copy()
    shifted[:, 4] += 50.0  # node 2's first metric has moved for good: a new level, not a fault
    np.testing.assert_allclose(point_scores(fitted, shifted), point_scores(fitted, test), rtol=1e-4, atol=1e-4)
    spiked = test.copy()
    spiked[100, 2:4] += 6.0  # node 1 misbehaves at one point
    nodes = point_scores(fitted, spiked)[100].reshape(3, 2)
    assert np.argmax((nodes**2).mean(axis=1) if fitted.reduction == "mean_sq" else nodes.mean(axis=1)) == 1


def test_without_the_graph_each_node_sees_only_itself():
    from omnistream.detectors.graphs import SystemConfig

    with_graph = SystemConfig(nodes=3, adjacency=CHAIN).graph()
    alone = SystemConfig(nodes=3, adjacency=CHAIN, use_graph=False).graph()
    assert with_graph[0, 1] > 0 and torch.equal(alone, torch.eye(3))
