"""`python -m bench.chaos`: the chaos run (see bench/chaos/__init__.py), its table and its JSON."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_factory import build_tiny_model

import bench.chaos
from bench.chaos import REPO
from bench.chaos.checks import log_summary, reference_run, verify
from bench.chaos.faults import SECRET, Clock, Postgres, Progress, Webhook, chaos_events
from bench.chaos.plan import PARTITIONS, RunConfig, draw_plan, publish
from bench.chaos.processes import Lives, consumer_env, final_phase, kill_phase
from bench.chaos.report import code_version, print_table, write_json
from pipeline.alerting.outbox import flush_outbox
from pipeline.dev.broker import EmbeddedBroker, ensure_topics
from pipeline.settings import Settings
from pipeline.storage.engine import migrate

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 10000}

log = logging.getLogger("chaos")


def run(config: RunConfig, work: Path, code: str) -> dict[str, Any]:
    model = build_tiny_model(work / "tiny.onnx")
    plan = draw_plan(config)
    logs = work / "logs"
    logs.mkdir()
    pg = Postgres(work)
    webhook = Webhook()
    try:
        with EmbeddedBroker(log_file=work / "broker.log") as broker:
            tag = uuid.uuid4().hex[:6]
            base: dict[str, Any] = {
                "bootstrap_servers": broker.bootstrap,
                "frames_topic": f"chaos-frames-{tag}",
                "dlq_topic": f"chaos-dlq-{tag}",
                "alerts_topic": f"chaos-alerts-{tag}",
                "group_id": f"chaos-{tag}",
                "model_path": model,
                "frame_store_url": str(work / "frames"),  # defect images: kept out of the repository
                "prefer_gpu": False,
                "batch_size": config.batch_size,
                "alert_log": False,
                "alert_cooldown_s": 0.0,  # every defect raises its own alert
                "webhook_secret": SECRET,
                "webhook_timeout_s": 2.0,
                "alert_poll_s": 0.2,
                "alert_retry_initial_s": 0.5,
                "alert_retry_max_s": 5.0,  # a minute's outage then costs seconds, not another minute, after it ends
                "db_retry_initial_s": 0.2,
                "db_retry_max_s": 1.0,
                "db_connect_timeout_s": 2,
                **FAST_GROUP,
            }
            settings_ref = Settings(**{**base, "database_url": "sqlite://"})
            ensure_topics(settings_ref.kafka_common(), [base["frames_topic"]], PARTITIONS)
            ensure_topics(settings_ref.kafka_common(), [base["dlq_topic"], base["alerts_topic"]], 1)
            truth = publish(settings_ref, config)
            log.info("published %d frames; reference run", config.frames)
            reference = reference_run(base, work, config.frames)

            chaos_url = pg.new_database()
            migrate(chaos_url)  # so that progress can be read before the first child has started
            values = base | {"database_url": chaos_url, "webhook_url": webhook.url}
            settings = Settings(**values)
            progress = Progress(chaos_url, settings.group_id)
            clock = Clock()
            lives = Lives(consumer_env(values), logs, clock)
            done = threading.Event()
            events = threading.Thread(
                target=chaos_events,
                args=(plan, config.frames, progress, pg, webhook, clock, done),
                name="chaos-events",
                daemon=True,
            )
            events.start()
            kill_phase(plan, config.batch_size, lives, progress, pg, webhook)
            clock.note("kills done")
            final_phase(config, lives, progress, pg)
            events.join(timeout=plan.webhook_down_s + sum(plan.pg_down_s) + 120)  # every outage over
            if events.is_alive():
                raise RuntimeError("the outage thread did not finish")
            flushed = flush_outbox(settings, timeout_s=60.0)
            time.sleep(1.0)  # a late duplicate would arrive now
            clock.note("outbox flushed", delivered=flushed)
            wall = clock.now()
            checks = verify(config, truth, reference, chaos_url, settings, webhook)
            done.set()
    finally:
        webhook.down()
        pg.close()
    outages = [e for e in clock.events if e["event"].startswith(("postgres", "webhook"))]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "config": asdict(config),
        "plan": asdict(plan),
        "model": "tests/pipeline/model_factory.build_tiny_model (blur reconstruction, 256x256x1)",
        "database": "PostgreSQL (pgserver wheel), unix socket",
        "reference_fps": round(reference.fps, 1),
        "wall_s": wall,
        "kills_done": len(lives.kills),
        "kills_mid_stream": sum(k["stored_in_life"] > 0 for k in lives.kills),
        "kills_during_pg_outage": sum(k["pg_down"] for k in lives.kills),
        "kills_during_webhook_outage": sum(k["webhook_down"] for k in lives.kills),
        "pg_outages": len(plan.pg_at),
        "webhook_down_s": plan.webhook_down_s,
        "consumer_starts": lives.started,
        "restarts": lives.started - 1,
        "self_exits": len(lives.exits),
        "self_exits_while_pg_down": sum(bool(e["pg_down"]) for e in lives.exits),
        "outbox_flushed_after": flushed,
        **checks,
        "kills": lives.kills,
        "exits": lives.exits,
        "outages": outages,
        "events": clock.events,
        "logs": log_summary(logs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=(bench.chaos.__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--defect-rate", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pg-outages", type=int, default=2)
    parser.add_argument("--pg-down", type=float, nargs=2, default=(5.0, 15.0), metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--webhook-down", type=float, default=60.0, help="seconds the webhook is down")
    parser.add_argument("--quick", action="store_true", help="smoke run: 400 frames, 4 kills, short outages")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (consumer logs, databases)")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/chaos.json)")
    parser.add_argument("--code", help="what code ran, recorded in the JSON (default: the git commit here)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    logging.getLogger("pipeline").setLevel(logging.WARNING)
    if args.quick:
        args.frames, args.kills, args.pg_down, args.webhook_down = 400, 4, (2.0, 4.0), 8.0
    config = RunConfig(
        frames=args.frames,
        kills=args.kills,
        seed=args.seed,
        defect_rate=args.defect_rate,
        batch_size=args.batch_size,
        pg_outages=args.pg_outages,
        pg_down_s=tuple(args.pg_down),
        webhook_down_s=args.webhook_down,
        idle_exit_s=5.0,
    )
    work = Path(tempfile.mkdtemp(prefix="lg-chaos-"))
    try:
        results = run(config, work, args.code or code_version())
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    write_json(results, args.out or REPO / "bench" / "results" / ("chaos-quick.json" if args.quick else "chaos.json"))
    sys.exit(0 if results["passed"] else 1)


if __name__ == "__main__":
    main()
