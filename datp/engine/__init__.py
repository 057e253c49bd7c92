"""The engine: a config becomes a model, data, a training run, an evaluation, a prediction
(docs/ARCHITECTURE.md)."""
