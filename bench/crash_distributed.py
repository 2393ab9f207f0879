"""Crash test across machines: two gateways and two workers, each with its own data folder, share one
PostgreSQL, Redis and S3-compatible store; under load one gateway and one worker get kill -9 and restart.

    .venv/bin/python bench/crash_distributed.py --messages 2000 --kills 6

Like bench/crash.py (same clients, same counting by Message-ID, same last
line ``acknowledged A, stored S, duplicated D, lost L``), but: a scratch
PostgreSQL database, a Redis namespace of its own, moto's standalone S3
server (``moto_server``) as the blob store with inlining off (every raw
message goes to S3 before its row), ``postroom serve --no-workers`` twice and
``postroom worker`` twice. Each client starts on one gateway and, like an MTA
with two MX hosts, tries the other one when a delivery fails. The kills
alternate between gateway 1 and worker 1 (the others keep running); the
last one is aimed at a moment when rows are being processed.
"""

from __future__ import annotations

import os
import sys

# Run as a file, sys.path[0] is bench/, where bench/threading.py would shadow the stdlib: use the repo root.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import boto3  # noqa: E402
from bench.crash import _MSGID, Run, Server  # noqa: E402
from bench.pipeline import REDIS_URL, scratch_pg  # noqa: E402
from bench.servers import VENV_BIN  # noqa: E402

from postroom.settings import load_settings  # noqa: E402
from postroom.testing import free_port  # noqa: E402

BUCKET = "postroom-crash"


class Worker:
    """One ``postroom worker`` process that can be SIGKILLed and restarted."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", "from postroom.cli import main; main()", "worker"],
                                         env=self.env, stdout=out, stderr=out)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class DistributedRun(Run):
    def __init__(self, args: argparse.Namespace, root: Path, shared: dict[str, str]) -> None:
        super().__init__(args, root / "gateway-1")
        common = {**self.env, **shared, "POSTROOM_INLINE_BLOB_MAX": "0",
                  "POSTROOM_BROKER_NAMESPACE": f"crash-{uuid.uuid4().hex[:8]}"}
        self.ports = [free_port(), free_port()]
        self.gateways = []
        for n, port in enumerate(self.ports, 1):
            env = {**common, "POSTROOM_DATA_DIR": str(root / f"gateway-{n}"),
                   "POSTROOM_SMTP_LISTEN": f"127.0.0.1:{port}"}
            Path(env["POSTROOM_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
            self.gateways.append(Server(env, port, root / f"gateway-{n}.log", ("--no-workers",)))
        self.workers = []
        for n in (1, 2):
            env = {**common, "POSTROOM_DATA_DIR": str(root / f"worker-{n}")}
            Path(env["POSTROOM_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
            self.workers.append(Worker(env, root / f"worker-{n}.log"))
        self.env = common
        self.settings = load_settings(environ={**common, "POSTROOM_DATA_DIR": str(root / "gateway-1")})
        self.server = self.gateways[0]
        self.kill_turn = 0
        self.gateway_up = [threading.Event(), threading.Event()]

    def kill_and_restart(self, *, stage: bool = False) -> None:
        """Alternately the first gateway and the first worker; the second of each keeps running."""
        self.figures.rows_processing_at_kills += self.processing_rows()
        if self.kill_turn % 2 == 0 and not stage:
            self.gateway_up[0].clear()
            self.gateways[0].kill()
            self.gateways[0].start()
            self.gateway_up[0].set()
        else:
            self.workers[0].kill()
            self.workers[0].start()
        self.kill_turn += 1
        self.figures.kills += 1
        self.figures.stage_kills += int(stage)

    def gateways_up(self) -> list[tuple[threading.Event, int]]:
        return list(zip(self.gateway_up, self.ports, strict=True))

    def stored_blob_ids(self) -> Counter[str]:
        """The blobs are S3 objects here: list them and read the Message-ID of each."""
        s3 = boto3.client("s3")
        bucket, _, prefix = self.settings.blob_url.removeprefix("s3://").partition("/")
        blob_ids: Counter[str] = Counter()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                found = _MSGID.search(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
                if found:
                    blob_ids[found.group(1).decode()] += 1
        return blob_ids

    def start_servers(self) -> None:
        for gateway, up in zip(self.gateways, self.gateway_up, strict=True):
            gateway.start()
            up.set()
        for worker in self.workers:
            worker.start()

    def stop_servers(self) -> None:
        for proc in (*self.gateways, *self.workers):
            proc.stop()


def moto_server(port: int) -> subprocess.Popen[bytes]:
    """moto's standalone S3 server on ``port`` with the bucket made."""
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            return proc
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--kills", type=int, default=6, help="SIGKILLs while sending, alternately gateway and worker")
    parser.add_argument("--no-stage-kill", dest="stage_kill", action="store_false")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--settle", type=float, default=300)
    args = parser.parse_args()
    args.seed = random.randrange(1 << 30) if args.seed is None else args.seed
    s3_port = free_port()
    os.environ.update(AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{s3_port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    moto = moto_server(s3_port)
    tmp = tempfile.mkdtemp(prefix="postroom-crash-distributed-")
    try:
        with scratch_pg() as pg:
            if pg is None:
                return 2
            args.database_url = pg
            shared = {"POSTROOM_BROKER_URL": REDIS_URL, "POSTROOM_BLOB_URL": f"s3://{BUCKET}/run-{uuid.uuid4().hex[:8]}"}
            figures = DistributedRun(args, Path(tmp), shared).run()
        print(f"seed {args.seed}; 2 gateways, 2 workers, PostgreSQL + Redis + S3 (moto); sent {figures.sent} "
              f"messages over {args.connections} connections in {figures.seconds} s; {figures.attempts} SMTP "
              f"attempts, {figures.refused} failed and retried")
        print(f"kills {figures.kills} (gateway and worker in turn, mid-stage {figures.stage_kills}); rows in "
              f"processing at the kills: {figures.rows_processing_at_kills}; rows processed more than once: "
              f"{figures.reprocessed}")
        for note in figures.notes:
            print(f"note: {note}")
        print(figures.last_line())
    finally:
        moto.kill()
        moto.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
