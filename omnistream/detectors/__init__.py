"""Anomaly detectors behind one contract, a registry that creates them by name, and their
TorchScript export."""
