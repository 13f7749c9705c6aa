"""LineGuard line runtime: Kafka frames scored by ONNX autoencoders, defects stored, alerts raised.

Nothing in this package may import torch: the line image carries no training stack.
"""

__version__ = "0.1.0"
