"""The model registry on the line's side: evaluation reports, the promotion gate, consumers following the active
version."""
