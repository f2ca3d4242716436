"""Anomaly events into the alerting people already run: Alertmanager, or any webhook."""
