import json
import subprocess
import sys

import numpy as np
import pytest

COMMANDS = ["broker", "worker", "replay", "record", "cluster", "fit", "transfer", "evaluate", "evaluate-transfer",
            "detectors", "topology",
            "bench", "schemas", "demo"]


def omnistream(*args):
    return subprocess.run([sys.executable, "-m", "omnistream.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = omnistream(command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_replay_rejects_ambiguous_input():
    result = omnistream("replay")
    assert result.returncode != 0 and "either a FILE or --dataset" in result.stdout + result.stderr


def test_schemas_are_written(tmp_path):
    assert omnistream("schemas", "--out", str(tmp_path)).returncode == 0
    schema = json.loads((tmp_path / "anomalies.schema.json").read_text())
    assert schema["title"] == "AnomalyEvent"


def test_bad_configuration_is_a_clear_error(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("window:\n  stride: 0\n")
    result = omnistream("worker", "--config", str(bad))
    assert result.returncode == 2 and "window.stride" in result.stdout + result.stderr
    missing = omnistream("worker", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stdout + missing.stderr


def test_unreachable_broker_is_a_clear_error():
    # 75, a temporary failure: without --no-restart the command would try again until the broker is up
    result = omnistream("worker", "--bootstrap", "127.0.0.1:1", "--no-restart")
    out = result.stdout + result.stderr
    assert result.returncode == 75 and "cannot reach Kafka at 127.0.0.1:1" in out
    # the client's failed connections over the 15 s wait (about 20 a second) are written once
    assert out.count("Connection refused") <= 2, out[-2000:]


def test_detectors_lists_every_registered_detector():
    from omnistream.detectors.registry import names

    result = omnistream("detectors")
    assert result.returncode == 0 and all(f"{name}:" in result.stdout for name in names())


def test_unknown_detector_and_key_are_clear_errors(tmp_path):
    result = omnistream("evaluate", "--detector", "lstm", "--entities", "omi-1")
    assert result.returncode == 2 and "unknown detector 'lstm'" in result.stdout + result.stderr
    config = tmp_path / "d.yaml"
    config.write_text("usad:\n  windw: 3\n")
    result = omnistream("fit", "--detector", "usad", "--entities", "omi-1", "--detector-config", str(config),
                        "--out", str(tmp_path / "m"))
    assert result.returncode == 2 and "windw" in result.stdout + result.stderr


def test_fit_exports_a_calibrated_model_from_a_user_folder(tmp_path):
    from omnistream.detectors.check import synthetic
    from omnistream.detectors.export import load

    data = synthetic(length=1500)
    folder = tmp_path / "data" / "web-1"
    folder.mkdir(parents=True)
    np.savetxt(folder / "train.csv", data[:1000], delimiter=",", header="cpu,mem,disk", comments="")
    np.savetxt(folder / "test.csv", data[1000:], delimiter=",")
    np.savetxt(folder / "test_label.csv", np.zeros(500), fmt="%d")
    config = tmp_path / "d.yaml"
    config.write_text("usad:\n  window: 5\n  epochs: 2\n")
    result = omnistream("fit", "--detector", "usad", "--dataset", str(tmp_path / "data"), "--detector-config",
                        str(config), "--out", str(tmp_path / "models"), "--risk", "0.005")
    assert result.returncode == 0, result.stderr
    _, info = load(tmp_path / "models" / "web-1.pt")
    assert info.name == "usad" and info.window == 5 and info.reduction == "mean" and info.entity == "web-1"
    assert info.calibration["q"] == 0.005 and info.threshold == info.calibration["threshold"] > 0


def test_cluster_then_base_models_from_a_recorded_topic_file(tmp_path):
    from omnistream.transfer.synthetic import fleet

    x, _ = fleet(12, 400, metrics=3, families=2, seed=4)
    names = ["cpu", "mem", "net"]
    lines = [json.dumps({"entity": f"host-{e}", "ts": 1000.0 + 60 * t, "metrics": dict(zip(names, x[e, t].tolist()))})
             for e in range(12) for t in range(400)]
    recorded = tmp_path / "metrics.jsonl"
    recorded.write_text("\n".join(lines) + "\n")
    clusters = tmp_path / "clusters"
    result = omnistream("cluster", "--dataset", str(recorded), "--out", str(clusters), "--max-clusters", "4")
    assert result.returncode == 0, result.stderr
    registry = json.loads((clusters / "clusters.json").read_text())
    assert f"{len(registry['sizes'])} clusters of 72 segments" in result.stdout and "host-" in result.stdout
    assert registry["metrics"] == names and sum(registry["sizes"]) == 72
    assert (clusters / "dendrogram.png").stat().st_size > 0 and (clusters / "clusters.png").stat().st_size > 0
    config = tmp_path / "d.yaml"
    config.write_text("zscore: {window: 8}\n")
    result = omnistream("fit", "--per-cluster", "--clusters", str(clusters), "--dataset", str(recorded),
                        "--detector", "zscore", "--detector-config", str(config))
    assert result.returncode == 0, result.stderr
    index = json.loads((clusters / "base" / "index.json").read_text())
    assert [m["cluster"] for m in index["models"]] == list(range(len(registry["sizes"])))
    assert all(m["detector"] == "zscore" for m in index["models"])
    missing = omnistream("fit", "--per-cluster", "--clusters", str(tmp_path / "none"), "--dataset", str(recorded))
    assert missing.returncode == 2 and "omnistream cluster" in missing.stdout + missing.stderr


def _user_folder(root, entities):
    """A user's data folder of (name, train rows, metrics) entities; constant train when rows < 0."""
    rng = np.random.default_rng(5)
    for name, rows, metrics in entities:
        folder = root / name
        folder.mkdir(parents=True)
        train = np.ones((-rows, metrics)) if rows < 0 else rng.normal(size=(rows, metrics))
        test = rng.normal(size=(200, metrics))
        test[50:55] += 6
        np.savetxt(folder / "train.csv", train, delimiter=",")
        np.savetxt(folder / "test.csv", test, delimiter=",")
        np.savetxt(folder / "test_label.csv", (np.arange(200) // 5 == 10).astype(int), fmt="%d")
    return root


def test_evaluate_and_fit_leave_a_bad_entity_out_and_go_on(tmp_path):
    data = _user_folder(tmp_path / "data", [("web-1", 600, 1), ("web-2", 600, 1), ("short", 186, 1),
                                            ("flat", -600, 1)])
    (data / "broken").mkdir()
    (data / "broken" / "train.csv").write_text("1\n2\n")
    result = omnistream("evaluate", "--detector", "zscore", "--dataset", str(data), "--out", str(tmp_path / "r"))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Traceback" not in out and "3 entities left out" in out and "history of 186 points is too short" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["entities"] == ["web-1", "web-2"]
    assert {e["entity"] for e in report["left_out"]} == {"short", "flat", "broken"}
    assert "z-score" in report["detectors"]["pca"]["notes"]["web-1"]  # one metric: PCA says what it falls back to
    fitted = omnistream("fit", "--detector", "zscore", "--dataset", str(data), "--out", str(tmp_path / "m"))
    out = fitted.stdout + fitted.stderr
    assert fitted.returncode == 0, out
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["web-1.pt", "web-2.pt"]
    assert "Traceback" not in out and "3 entities left out (2 models written" in out
    assert out.count("held-out history too short to check the threshold") == 2  # 60 points a half: no tail to fit


def test_evaluate_open_after_counts_incidents_by_the_rule_asked_for(tmp_path):
    data = _user_folder(tmp_path / "data", [("web-1", 600, 2), ("web-2", 600, 2)])
    reports = {}
    for n in ("1", "2"):
        result = omnistream("evaluate", "--detector", "zscore", "--dataset", str(data), "--open-after", n,
                            "--out", str(tmp_path / n))
        assert result.returncode == 0, result.stdout + result.stderr
        reports[n] = json.loads((tmp_path / n / "report.json").read_text())
    assert reports["2"]["calibration"]["open_after"] == 2
    one, two = (reports[n]["detectors"]["zscore"]["summary"] for n in ("1", "2"))
    assert one["deployed"] == two["deployed"]  # the same decisions: only the incidents differ
    assert two["incidents"]["incidents"]["mean"] < one["incidents"]["incidents"]["mean"]


def test_evaluate_with_no_usable_entity_is_a_clear_error(tmp_path):
    data = _user_folder(tmp_path / "data", [("short", 186, 2), ("flat", -600, 2)])
    result = omnistream("evaluate", "--detector", "zscore", "--dataset", str(data), "--out", str(tmp_path / "r"))
    out = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in out
    assert "no entity can be evaluated" in out and "short: history of 186 points" in out


def test_fit_system_exports_one_model_of_the_whole_system(tmp_path):
    from omnistream.detectors.export import load

    data = _user_folder(tmp_path / "shop", [("api", 400, 2), ("db", 400, 2), ("cache", 400, 2)])
    (data / "topology.csv").write_text("caller,callee\napi,db\napi,cache\n")
    config = tmp_path / "d.yaml"
    config.write_text("stdrift: {window: 6, dim: 4, epochs: 2}\n")
    result = omnistream("fit", "--system", "--detector", "stdrift", "--dataset", str(data), "--detector-config",
                        str(config), "--out", str(tmp_path / "m"))
    assert result.returncode == 0, result.stdout + result.stderr
    module, info = load(tmp_path / "m" / "shop.pt")
    assert info.input_kind == "system" and info.nodes == ["api", "cache", "db"] and info.metrics[2] == "cache/m00"
    assert len(info.node_calibration) == 3 and info.config["adjacency"][0] == [0.0, 1.0, 1.0]
    assert "shop: stdrift over 3 entities and 2 calls" in result.stdout
    wrong = omnistream("fit", "--system", "--detector", "zscore", "--dataset", str(data), "--out", str(tmp_path / "m"))
    assert wrong.returncode == 2 and "needs a system detector" in wrong.stdout + wrong.stderr
