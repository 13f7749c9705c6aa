"""LineGuard training: fit, calibrate, evaluate and export convolutional autoencoders to ONNX."""
