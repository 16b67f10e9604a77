"""QoS data plane: per-path congestion detection and prediction, and what acts on it."""
