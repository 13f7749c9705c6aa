"""Chaos run: SIGKILL the consumer at random points while PostgreSQL stops and starts and the webhook is down.

    python -m bench.chaos                 # 3000 frames, 20 kills, 2 PostgreSQL outages, webhook down 60 s
    python -m bench.chaos --quick         # a short smoke run: 400 frames, 4 kills, short outages

Frames go to a 2-partition topic on the embedded broker first (a backlog, so the consumer is busy when it
is killed). A clean run of the same code into SQLite (another group) is the reference. Then `lineguard
consume` runs as a child process against PostgreSQL (pgserver) and a webhook receiver (signed). Kill i
falls when the life has done a random number of records (the spacings of sorted uniform points over the
stream), or a random time into a PostgreSQL outage, or after a random life span (so that some land during
a group join), plus a random jitter; each life is then restarted. PostgreSQL is stopped twice (fast, then
immediate shutdown, each just after a batch landed so that a running writer meets it) for 5 to 15 s, and
the webhook is down for a minute, at random points of the stream. A child that exits by itself (e.g. it
cannot reach the database at start) is restarted and reported. After the last kill a life with
--idle-exit finishes the stream and the outbox is flushed. Then: the defects against the reference,
frame counts against the frames sent, every alert row against what the webhook received (distinct ids,
duplicates, missing), the DLQ and the committed offsets.

Prints a table and writes bench/results/chaos.json (chaos-quick.json for --quick). Exit code 1 when a
defect is lost or doubled, a frame counted twice or never, or an alert never delivered.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The pipeline from this checkout, and the tiny real ONNX model of the tests (tests/pipeline/model_factory.py).
for _path in (REPO, REPO / "tests" / "pipeline"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
