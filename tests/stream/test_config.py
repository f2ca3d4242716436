from pathlib import Path

import pytest
from pydantic import ValidationError

from omnistream.stream.config import Settings, load_settings


def test_file_then_environment_then_overrides(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("kafka:\n  bootstrap: file:1\n  topic_prefix: p.\nwindow:\n  stride: 2\n")
    env = {"OMNISTREAM_KAFKA__BOOTSTRAP": "env:2", "OMNISTREAM_DECIDE__PUBLISH_SCORES": "true", "HOME": "/x"}
    s = load_settings(config, environ=env, device="cpu")
    assert s.kafka.bootstrap == "env:2" and s.kafka.topic_prefix == "p." and s.window.stride == 2
    assert s.decide.publish_scores is True and s.device == "cpu" and s.topic("anomalies") == "p.anomalies"


def test_toml_and_errors(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[kafka]\nsecurity = {"security.protocol" = "SASL_SSL"}\n')
    assert load_settings(toml, environ={}).kafka.security == {"security.protocol": "SASL_SSL"}
    with pytest.raises(ValidationError):
        load_settings(environ={"OMNISTREAM_WINDOW__STRIDE": "0"})
    bad = tmp_path / "c.yaml"
    bad.write_text("kafka:\n  bootstrapp: typo\n")
    with pytest.raises(ValidationError):
        load_settings(bad, environ={})


def test_the_example_configuration_is_valid():
    example = Path(__file__).resolve().parents[2] / "deploy" / "omnistream.example.yaml"
    settings = load_settings(example, environ={})
    assert settings.transfer.points == 1440 and settings.triggers.drift_points == 720
    assert settings.transfer.registry == Path("clusters")


def test_deployments_are_scoped_by_their_prefix():
    a, b = Settings(kafka={"topic_prefix": "prod."}), Settings(kafka={"topic_prefix": "staging."})
    assert (a.app_id, b.app_id, Settings().app_id) == ("prod.omnistream", "staging.omnistream", "omnistream")
    assert Settings(app_id="mine", kafka={"topic_prefix": "prod."}).app_id == "mine"


def test_min_insync_replicas_cannot_exceed_the_replication():
    with pytest.raises(ValidationError, match="min_insync_replicas"):
        Settings(kafka={"replication": 1, "min_insync_replicas": 2})


@pytest.mark.parametrize("name", ["telegraf.yaml", "prometheus-kafka-adapter.yaml", "otlp.yaml"])
def test_the_collector_examples_in_deploy_are_valid_settings(name):
    settings = load_settings(Path(__file__).resolve().parents[2] / "deploy" / "sources" / name, environ={})
    assert settings.sources and all(s.format != "omnistream" for s in settings.sources)
