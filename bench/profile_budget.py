"""Per-frame CPU budget of the consumer by stage, from py-spy's raw stacks of a bench_pipeline.py run.

    .venv/bin/pip install py-spy   # not a project dependency
    .venv/bin/py-spy record --rate 100 --format raw --threads -o stacks.txt -- \\
        .venv/bin/python bench/bench_pipeline.py --stand-in --width 4 --frames 4000 --naive-frames 200 --formats jpeg
    python bench/profile_budget.py stacks.txt --frames 4000 --threads 9002-9008

The end-to-end phase is the main thread's samples under run_consumer plus the threads it started (its decode
pool, batch writer and Kafka client threads: pass their ids, which py-spy prints as `thread (ID): name`; they are
the ids between the producer's threads and the latency phase's). py-spy counts a thread blocked in some C calls as
active, so samples whose innermost frame is a wait (a pool worker's queue, epoll, a condition) are left out.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

WAITS = ("_worker @concurrent/futures/thread.py:81", "EpollSelector.select", "Condition.wait", "Event.wait")
STARTUP = "startup (consumer, database, migrations)"
MODEL = "scoring: the model (Session.run)"
# A sample belongs to the first stage, in this order, that any function of its stack names.
STAGES = [
    (STARTUP, ("open_consumer", "open_database_when_up", "ModelHolder.__init__")),
    (MODEL, ("OnnxModel.score",)),
    ("restore inference (defects only)", ("OnnxModel.restore",)),
    ("PNG encoding (overlay, restored frame)", ("overlay_png", "image_png")),
    ("region extraction", ("find_regions",)),
    ("decode + preprocess (pool)", ("decode_record", "try_decode", "decode_image", "preprocess", "_header")),
    ("poll + wire parsing", ("FrameSource.poll",)),
    ("offset commit", ("LineConsumer.commit", "FrameSource.commit")),
    ("batch transaction (writer thread)", ("BatchTransaction", "write_results", "advance_offsets", "_add_counts")),
    ("metrics", ("ConsumerMetrics",)),
    ("verdict, batch assembly", ("score_batch", "with_evidence", "LineConsumer.process", "frame_conditions")),
    ("Kafka client threads", ("NetworkSelector", "Sender.run_once", "KafkaConnection")),
]


def thread_ids(spec: str) -> set[str]:
    first, _, last = spec.partition("-")
    return {f"({i})" for i in range(int(first), int(last or first) + 1)}


def budget(stacks: Path, threads: set[str]) -> collections.Counter[str]:
    samples: collections.Counter[str] = collections.Counter()
    for line in stacks.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        thread, *frames = stack.split(";")
        consumer = "MainThread" in thread and any(frame.startswith("run_consumer") for frame in frames)
        if not (consumer or any(t in thread for t in threads)) or not frames:
            continue
        leaf = frames[-1].split(" (")[0] + " @" + frames[-1].split("(")[-1]
        if any(wait in leaf for wait in WAITS):
            continue
        names = [frame.split(" (")[0] for frame in frames]
        stage = next((s for s, keys in STAGES if any(k in name for k in keys for name in names)), "other Python")
        samples[stage] += int(count)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path, help="py-spy --format raw output")
    parser.add_argument("--frames", type=int, required=True, help="frames of the end-to-end phase")
    parser.add_argument("--rate", type=int, default=100, help="py-spy's samples per second")
    parser.add_argument("--threads", default="", help="ids of the end-to-end phase's own threads, e.g. 9002-9008")
    args = parser.parse_args()
    samples = budget(args.stacks, thread_ids(args.threads) if args.threads else set())
    ms = {stage: n * 1000 / args.rate / args.frames for stage, n in samples.items()}
    total = sum(ms.values())
    print("| stage | CPU ms per frame | share |\n|---|---|---|")
    for stage, value in sorted(ms.items(), key=lambda item: -item[1]):
        print(f"| {stage} | {value:.3f} | {100 * value / total:.1f} % |")
    running = total - ms.get(STARTUP, 0.0)
    print(f"\nper frame: {running:.3f} ms after start-up, {running - ms.get(MODEL, 0.0):.3f} ms outside the model")


if __name__ == "__main__":
    main()
