"""The worker's state, as the Prometheus enum and the /ready and /live probes."""

import urllib.error
import urllib.request

from omnistream.stream.health import WorkerHealth, serve


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_states_follow_start_rebalance_and_outage():
    health = WorkerHealth()
    assert health.state == "starting"
    health.set(started=True)
    assert health.state == "running"
    health.set(rebalancing=True)
    assert health.state == "rebalancing"
    health.set(broker_down=True)
    assert health.state == "broker_unreachable"  # the outage says more than the rebalance it caused
    health.set(broker_down=False, rebalancing=False)
    assert health.state == "running"


def test_every_entry_into_a_state_is_counted_once():
    from omnistream.stream import telemetry

    def entered(state: str) -> float:
        return telemetry.WORKER_STATE_CHANGES.labels(state)._value.get()

    before = {s: entered(s) for s in ("starting", "running", "broker_unreachable")}
    health = WorkerHealth()
    health.set(started=True)
    health.set(broker_down=True)
    health.set(broker_down=True)  # the same state again is no change
    health.set(rebalancing=False)
    health.set(broker_down=False)
    assert {s: entered(s) - before[s] for s in before} == {"starting": 1, "running": 2, "broker_unreachable": 1}


def test_probes_and_metrics_are_served():
    now = [0.0]
    health = WorkerHealth(stall_seconds=120.0, clock=lambda: now[0])
    server = serve(health, 0)
    port = server.server_address[1]
    try:
        assert _get(port, "/ready") == (503, "starting\n")
        now[0] = 500.0  # a long table recovery is not a stall
        assert _get(port, "/live")[0] == 200
        health.set(started=True)
        assert _get(port, "/ready") == (200, "running\n")
        health.set(broker_down=True)
        assert _get(port, "/ready") == (503, "broker_unreachable\n")
        assert _get(port, "/live")[0] == 200  # an outage is no reason to restart the process
        now[0] = 621.0  # the event loop has not turned for two minutes
        assert _get(port, "/live")[0] == 503
        status, metrics = _get(port, "/metrics")
        assert status == 200 and 'omnistream_worker_state{omnistream_worker_state="broker_unreachable"} 1.0' in metrics
    finally:
        server.shutdown()
