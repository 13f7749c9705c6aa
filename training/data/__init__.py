"""Training data: image folders, condition labels, corruptions, synthetic defects and the synthetic demo set."""
