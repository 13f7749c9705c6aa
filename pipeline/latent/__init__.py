"""The models' latent space on the line side (onnxruntime, no torch): embeddings, clusters, generated images."""
