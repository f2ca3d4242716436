"""OmniTransfer (Zhang et al.): W-HAC clustering of entity segments, a base model per
cluster, adaptive full/partial transfer to a new entity, and the Kafka service that runs it."""
