"""The consumer's lives: child processes started, SIGKILLed at the plan's points and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos import REPO
from bench.chaos.faults import Clock, Postgres, Progress, Webhook, outage_due
from bench.chaos.plan import ChaosPlan, RunConfig

RESTART_DELAY_S = 1.0  # after a child exited by itself (e.g. it could not reach the database at start)
FINAL_STALL_S = 180.0  # the final life is killed (and reported) when it makes no progress for this long
CRASH_LOOP = 30  # this many exits in a row with the database up: the consumer cannot start, give up


def consumer_env(values: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update({f"LINEGUARD_{key.upper()}": str(value) for key, value in values.items()})
    return env


@dataclass
class Lives:
    """The consumer child processes: each life has its own log; kills, exits and restarts are recorded."""

    env: dict[str, str]
    logs: Path
    clock: Clock
    started: int = 0
    kills: list[dict[str, Any]] = field(default_factory=list)
    exits: list[dict[str, Any]] = field(default_factory=list)
    exits_in_a_row: int = 0  # with the database up, since the last kill

    def start(self, idle_exit: float | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        command = [sys.executable, "-m", "pipeline", "consume"]
        if idle_exit is not None:
            command += ["--idle-exit", str(idle_exit)]
        path = self.logs / f"life-{self.started:02d}.log"
        with open(path, "wb") as out:  # the child holds its own descriptor
            process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.started += 1
        return process, path

    def exited(self, process: subprocess.Popen[bytes], path: Path, pg_down: bool) -> None:
        tail = path.read_text(errors="replace").splitlines()[-12:]
        self.clock.note("consumer exited", code=process.returncode, log=path.name, pg_down=pg_down)
        self.exits.append(
            {"t": self.clock.now(), "code": process.returncode, "log": path.name, "pg_down": pg_down, "tail": tail}
        )
        self.exits_in_a_row += not pg_down
        if self.exits_in_a_row >= CRASH_LOOP:
            raise RuntimeError(f"the consumer exited {CRASH_LOOP} times in a row; the last said:\n" + "\n".join(tail))


def kill_phase(
    plan: ChaosPlan, batch_size: int, lives: Lives, progress: Progress, pg: Postgres, webhook: Webhook
) -> None:
    """Start, wait for the kill point, SIGKILL, restart; a child that exits by itself is restarted and noted."""
    clock = lives.clock
    kill = 0
    while kill < len(plan.kill_at):
        process, path = lives.start()
        born, (value, db_up) = time.monotonic(), progress.read()
        deadline = born + plan.kill_deadline_s[kill]
        # A life stores at least one batch before a threshold kill, counted from its first reading (while the
        # database is down the last one may be stale).
        at_birth = value if db_up else None
        while process.poll() is None:
            value, db_up = progress.read()
            if at_birth is None and db_up:
                at_birth = value
            now, down_since = time.monotonic(), pg.down_since
            in_outage = down_since is not None and now - max(down_since, born) >= plan.kill_in_outage_s[kill]
            reached = (
                at_birth is not None
                and value >= max(plan.kill_at[kill], at_birth + batch_size)
                and not outage_due(pg, value)
            )
            if reached or in_outage or now >= deadline:
                trigger = "threshold" if reached else "pg outage" if in_outage else "deadline"
                time.sleep(plan.kill_jitter_s[kill])
                if process.poll() is not None:
                    break
                if reached and outage_due(pg, progress.read()[0]):
                    continue  # the outage came due during the jitter: it goes first
                process.send_signal(signal.SIGKILL)
                process.wait()
                kill += 1
                after, _ = progress.read()
                record = {
                    "kill": kill,
                    "t": clock.now(),
                    "trigger": trigger,
                    "life_s": round(time.monotonic() - born, 2),
                    "records_done": after,
                    "stored_in_life": after - at_birth if at_birth is not None else 0,
                    "pg_down": pg.down or not db_up,
                    "webhook_down": not webhook.is_up,
                    "log": path.name,
                }
                lives.kills.append(record)
                lives.exits_in_a_row = 0
                clock.note("SIGKILL", **{k: record[k] for k in ("kill", "trigger", "records_done", "pg_down")})
                break
            time.sleep(0.05)
        if process.returncode not in (None, -signal.SIGKILL):
            lives.exited(process, path, pg.was_down(born))
            time.sleep(RESTART_DELAY_S)


def final_phase(config: RunConfig, lives: Lives, progress: Progress, pg: Postgres) -> None:
    """Lives with --idle-exit until every record is done and one exits cleanly; a stalled one is killed."""
    while True:
        process, path = lives.start(idle_exit=config.idle_exit_s)
        born = time.monotonic()
        last_value, last_change = progress.read()[0], time.monotonic()
        while process.poll() is None:
            value, _ = progress.read()
            if value != last_value:
                last_value, last_change = value, time.monotonic()
            if time.monotonic() - last_change > FINAL_STALL_S:
                lives.clock.note("final life stalled: SIGKILL", records_done=value, log=path.name)
                process.send_signal(signal.SIGKILL)
                process.wait()
                lives.exits.append(
                    {"t": lives.clock.now(), "code": "stalled", "log": path.name, "pg_down": pg.was_down(born)}
                )
                break
            time.sleep(0.2)
        if process.returncode != 0:
            if process.returncode != -signal.SIGKILL:
                lives.exited(process, path, pg.was_down(born))
            time.sleep(RESTART_DELAY_S)
            continue
        done, _ = progress.read()
        lives.clock.note("final life exited", code=0, records_done=done, log=path.name)
        if done >= config.frames:
            return
        time.sleep(RESTART_DELAY_S)
