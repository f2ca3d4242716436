"""A warning repeated during an outage is written once per interval, with a count."""

import logging

from omnistream.stream.logs import RateLimitedLog, RepeatFilter


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


def test_repeat_filter_thins_identical_warnings_only():
    now = [0.0]
    repeat = RepeatFilter(every=60.0, clock=lambda: now[0])

    def record(level, msg, *args):
        return logging.LogRecord("aiokafka", level, __file__, 1, msg, args, None)

    passed = [repeat.filter(record(logging.ERROR, "Unable to connect to %s (after %dms)", "node 1", ms % 7))
              for ms in range(500)]
    assert passed.count(True) == 1  # the same words, whatever the numbers
    assert repeat.filter(record(logging.ERROR, "Unable to connect to %s", "broker b"))  # a different message
    assert all(repeat.filter(record(logging.INFO, "heartbeat")) for _ in range(3))  # below WARNING: all pass
    now[0] = 61.0
    again = record(logging.ERROR, "Unable to connect to %s (after %dms)", "node 1", 3)
    assert repeat.filter(again)
    assert again.getMessage() == "Unable to connect to node 1 (after 3ms) (499 more like it held back)"


def test_json_logs_are_one_object_per_line():
    import io

    import orjson

    from omnistream.stream.logs import use_json

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    use_json([handler])
    logger = logging.getLogger("omnistream.test.json")
    logger.addHandler(handler)
    try:
        logger.warning("broker %s unreachable", "b:9092")
    finally:
        logger.removeHandler(handler)
    line = orjson.loads(stream.getvalue().strip())
    assert (line["level"], line["logger"], line["message"]) == ("WARNING", "omnistream.test.json",
                                                                 "broker b:9092 unreachable")
