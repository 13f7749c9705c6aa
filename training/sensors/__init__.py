"""Sensor models' training side: CSV recordings and windows, the fit, calibration, ONNX export and evaluation."""
