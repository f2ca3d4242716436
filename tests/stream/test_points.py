"""The internal points topic's packing."""

import orjson

from omnistream.stream.points import POINTS_PER_MESSAGE, pack_points, unpack_points
from omnistream.stream.points import Point


def test_packed_points_come_back_in_order_with_missing_values():
    points = [(1000.0 + i, {"cpu": float(i), "mem": None}) for i in range(2 * POINTS_PER_MESSAGE + 3)]
    messages = list(pack_points("web-1", "metrics.web-1", points))
    assert len(messages) == 3 and all(len(orjson.loads(m)["points"]) <= POINTS_PER_MESSAGE for m in messages)
    got, samples = unpack_points((m, 5, i) for i, m in enumerate(messages))
    assert samples == []
    assert got == [Point("web-1", ts, metrics, "metrics.web-1", 5) for ts, metrics in points]


def test_messages_of_several_entities_keep_their_order():
    first = list(pack_points("a", "metrics", [(1.0, {"x": 1.0})]))
    second = list(pack_points("b", "metrics", [(0.5, {"x": 2.0}), (0.7, {"x": 3.0})]))
    got, _ = unpack_points([(first[0], 0, 0), (second[0], 1, 0)])
    assert [(p.entity, p.ts, p.partition) for p in got] == [("a", 1.0, 0), ("b", 0.5, 1), ("b", 0.7, 1)]
