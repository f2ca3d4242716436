"""The Kafka side: records, topics, windows, scoring, decisions and the Faust app."""
