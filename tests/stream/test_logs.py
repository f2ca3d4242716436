"""A warning repeated during an outage is written once per interval, with a count."""

import logging

from omnistream.stream.logs import RateLimitedLog


def test_repeats_are_held_back_and_counted(caplog):
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("t"), every=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="t"):
        assert limited.warning("broker down: %s", "x")
        for step in range(1, 100):
            now[0] = step * 0.5
            assert not limited.warning("broker down: %s", "x")
        now[0] = 61.0
        assert limited.warning("broker down: %s", "x")
        limited.reset()
        assert limited.warning("broker down: %s", "y")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["broker down: x", "broker down: x (99 more like it held back)", "recovered",
                     "broker down: y"]
