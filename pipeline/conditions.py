"""Condition indices of conditional models: a frame's camera id (or named header) mapped through the model's vocabulary.

A value outside the vocabulary falls back to index 0, the unconditional path the model was trained on by condition
dropout: logged once per new value and counted, never refused (docs/models/cvae.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from pipeline.contract import UNKNOWN_CONDITION, ConditionSpec
from pipeline.wire import FrameMeta, Headers

log = logging.getLogger(__name__)


class ConditionMap:
    """One loaded model's vocabulary: value -> index, and a count of the frames that fell back to "unknown"."""

    def __init__(self, spec: ConditionSpec) -> None:
        self.spec = spec
        self.index = {value: i + 1 for i, value in enumerate(spec.values)}
        self.fallbacks = 0
        self._reported: set[str | None] = set()

    def value_of(self, meta: FrameMeta, headers: Headers | None) -> str | None:
        """The frame's condition value from where the model says it comes from; None when the header is absent."""
        header = self.spec.header
        if header is None:
            return meta.camera_id
        for name, raw in headers or []:
            if name == header and raw is not None:
                return raw.decode("utf-8", errors="replace")
        return None

    def indices(self, values: Sequence[str | None]) -> np.ndarray:
        """int64 index per value; unknown values get UNKNOWN_CONDITION."""
        out = np.empty(len(values), dtype=np.int64)
        for position, value in enumerate(values):
            index = self.index.get(value) if value is not None else None
            if index is None:
                index = UNKNOWN_CONDITION
                self.fallbacks += 1
                self._report(value)
            out[position] = index
        return out

    def take_fallbacks(self) -> int:
        """Fallbacks since the last call (for the metrics counter)."""
        count, self.fallbacks = self.fallbacks, 0
        return count

    def _report(self, value: str | None) -> None:
        if value in self._reported:
            return
        self._reported.add(value)
        shown = "missing" if value is None else repr(value[:64])
        log.warning(
            "condition %s (%s) not in the model's vocabulary %s: scored unconditionally (index 0)",
            shown,
            self.spec.source,
            list(self.spec.values),
        )
