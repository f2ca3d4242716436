"""The registry creates detectors by name and refuses what does not exist, saying what does."""

import pytest

from omnistream.detectors.registry import DetectorError, create, describe, names


def test_create_by_name_with_config():
    detector = create("usad", window=7, latent=5)
    assert detector.name == "usad" and detector.window == 7 and detector.config.latent == 5


def test_unknown_name_lists_the_registered_detectors():
    with pytest.raises(DetectorError, match="unknown detector 'lstm'.*zscore.*usad"):
        create("lstm")


def test_unknown_or_bad_key_names_the_hyper_parameters():
    with pytest.raises(DetectorError, match="usad: windw: Extra inputs.*latent"):
        create("usad", windw=5)
    with pytest.raises(DetectorError, match="window: Input should be greater than or equal to 2"):
        create("tranad", window=0)


def test_every_detector_documents_its_hyper_parameters():
    for name in names():
        described = describe(name)
        assert "window" in described and "seed" in described
        assert all(meaning for _, meaning in described.values()), name
