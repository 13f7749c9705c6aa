"""Alerting: rules over verdicts, the outbox the batch transaction fills, and the channels that deliver from it."""
