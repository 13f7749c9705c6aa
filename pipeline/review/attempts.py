"""Wrong review tokens per client address: the bound on guessing that the page's writes sit behind."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class FailedAttempts:
    """Wrong tokens per client address, in a sliding window: past `limit` the client is refused (429) until the
    window has moved on, right token or not. At most `clients` addresses are remembered (oldest dropped)."""

    limit: int = 10
    window_s: float = 60.0
    clients: int = 10_000
    _seen: OrderedDict[str, list[float]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, client: str, now: float | None = None) -> int:
        """Seconds until `client` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for t in self._seen.get(client, []) if now - t < self.window_s]
            if recent:
                self._seen[client] = recent
            else:
                self._seen.pop(client, None)
            if len(recent) < self.limit:
                return 0
            return max(1, math.ceil(self.window_s - (now - recent[-self.limit])))

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._seen.setdefault(client, []).append(now)
            self._seen.move_to_end(client)
            del self._seen[client][: -self.limit]
            while len(self._seen) > self.clients:
                self._seen.popitem(last=False)
