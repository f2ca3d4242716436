"""The Kafka side of omnistream: records, topics, windows, scoring, decisions, the Faust app, CLI."""
