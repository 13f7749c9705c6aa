"""Stored frames: the frame store (local folder or fsspec URL), its retention sweep and the MVTec-layout export."""
