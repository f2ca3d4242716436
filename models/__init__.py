"""Detectors, training, thresholds, evaluation, clustering and transfer for omnistream."""
