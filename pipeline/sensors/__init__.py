"""Sensor readings on the line: the wire format, CSV recordings, windows, the model, per-device state, the stage."""
