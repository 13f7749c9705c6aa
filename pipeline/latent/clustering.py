"""Clusters of embeddings (scikit-learn, the `cluster` extra): k-means or DBSCAN on standardised embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import LineGuardError

METHODS = ("kmeans", "dbscan")
NOISE = -1  # DBSCAN's label for points in no dense region
CLUSTER_EXTRA_HINT = "pip install 'lineguard[cluster]'"


def require_sklearn() -> None:
    try:
        import sklearn  # noqa: F401
    except ModuleNotFoundError as exc:
        raise LineGuardError(f"clustering needs scikit-learn (the cluster extra): {CLUSTER_EXTRA_HINT}") from exc


@dataclass(frozen=True)
class Clustering:
    """Labels per embedding, the silhouette score (None when undefined: one cluster, or all noise) and the
    standardised embeddings the distances were measured in."""

    labels: np.ndarray
    silhouette: float | None
    method: str
    points: np.ndarray

    @property
    def clusters(self) -> list[int]:
        return sorted(int(c) for c in set(self.labels.tolist()))

    def representatives(self, cluster: int, count: int) -> np.ndarray:
        """Indices of the `count` members nearest their cluster's mean: what a contact sheet shows first."""
        members = np.flatnonzero(self.labels == cluster)
        centre = self.points[members].mean(axis=0)
        order = np.argsort(((self.points[members] - centre) ** 2).sum(axis=1))
        return members[order[:count]]


def cluster_embeddings(
    embeddings: np.ndarray, method: str, k: int = 8, eps: float | None = None, min_samples: int = 5, seed: int = 0
) -> Clustering:
    """Standardise each embedding dimension (the raw code's channels differ in scale by orders), then cluster."""
    require_sklearn()
    from sklearn.cluster import DBSCAN, KMeans
    from sklearn.preprocessing import StandardScaler

    if method not in METHODS:
        raise LineGuardError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if len(embeddings) < 2:
        raise LineGuardError(f"need at least 2 defects with frames to cluster, found {len(embeddings)}")
    points = StandardScaler().fit_transform(embeddings.astype(np.float64))
    if method == "kmeans":
        if not 2 <= k <= len(points):
            raise LineGuardError(f"--k must be in 2..{len(points)} (the defects found), got {k}")
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(points)
    else:
        radius = eps if eps is not None else neighbour_radius(points, min_samples)
        labels = DBSCAN(eps=radius, min_samples=min_samples).fit_predict(points)
    return Clustering(labels.astype(np.int64), silhouette(points, labels), method, points)


def neighbour_radius(points: np.ndarray, min_samples: int, share: float = 0.9) -> float:
    """DBSCAN's eps when none is given: the radius within which `share` of the points have the min_samples - 1
    neighbours that make them core points (scikit-learn counts the point itself in min_samples)."""
    from sklearn.neighbors import NearestNeighbors

    neighbours = max(1, min(min_samples - 1, len(points) - 1))
    distances, _ = NearestNeighbors(n_neighbors=neighbours + 1).fit(points).kneighbors(points)
    return float(np.quantile(distances[:, -1], share)) or 1e-6


def silhouette(points: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean silhouette over clustered points (DBSCAN noise left out); None where it is undefined."""
    from sklearn.metrics import silhouette_score

    kept = labels != NOISE
    found = len(set(labels[kept].tolist()))
    if found < 2 or found >= kept.sum():
        return None
    return float(silhouette_score(points[kept], labels[kept]))
