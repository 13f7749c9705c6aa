"""k-means and DBSCAN on standardised embeddings: separated groups found, silhouette defined only where it can be."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import LineGuardError
from pipeline.latent.clustering import NOISE, cluster_embeddings


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two groups of 60 in 8 dimensions whose scales differ by 1000 (standardising must even them out)."""
    rng = np.random.default_rng(seed)
    truth = np.repeat([0, 1], 60)
    points = rng.normal(0, 0.3, (120, 8)) + truth[:, None] * 3.0
    return points * np.array([1, 1, 1, 1, 1000, 1000, 1000, 1000]), truth


def agree(labels: np.ndarray, truth: np.ndarray) -> bool:
    kept = labels != NOISE
    return all(len(set(labels[kept & (truth == t)].tolist())) == 1 for t in (0, 1)) and len(set(labels[kept])) == 2


def test_kmeans_finds_the_groups() -> None:
    points, truth = blobs()
    result = cluster_embeddings(points, "kmeans", k=2)
    assert agree(result.labels, truth)
    assert result.silhouette is not None and result.silhouette > 0.7
    nearest = result.representatives(int(result.labels[0]), 5)
    assert len(nearest) == 5 and set(result.labels[nearest].tolist()) == {result.labels[0]}


def test_dbscan_with_its_default_radius_finds_the_groups_and_little_noise() -> None:
    points, truth = blobs()
    result = cluster_embeddings(points, "dbscan", min_samples=5)
    assert agree(result.labels, truth)
    assert (result.labels == NOISE).mean() <= 0.1


def test_one_cluster_has_no_silhouette_and_bad_arguments_are_errors() -> None:
    points, _ = blobs()
    one = cluster_embeddings(points[:60], "dbscan", eps=100.0)
    assert one.clusters == [0] and one.silhouette is None
    with pytest.raises(LineGuardError, match="need at least 2 defects"):
        cluster_embeddings(points[:1], "kmeans")
