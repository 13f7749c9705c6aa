"""Cluster ids of defects (`lineguard cluster`): one clustering at a time, written in one transaction."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from pipeline.storage.tables import Defect


def write_clusters(session: Session, clusters: Mapping[int, int]) -> int:
    """Set each defect id's cluster and clear every other defect's: ids of an earlier clustering mean nothing now."""
    session.execute(update(Defect).where(Defect.cluster.is_not(None)).values(cluster=None))
    if clusters:
        session.execute(update(Defect), [{"id": key, "cluster": int(value)} for key, value in clusters.items()])
    return len(clusters)


def cluster_sizes(session: Session) -> dict[int, int]:
    """Defects per cluster id of the last clustering."""
    query = select(Defect.cluster, func.count()).where(Defect.cluster.is_not(None)).group_by(Defect.cluster)
    return {int(cluster): int(count) for cluster, count in session.execute(query)}
