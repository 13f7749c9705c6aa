"""ONNX exports: the full model under the contract, the encoder and the decoder of a trained model."""
