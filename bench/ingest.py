"""Ingest benchmark (issue 2): postroom's durable gateway against an aiosmtpd sink, same load, same run.

    .venv/bin/python bench/ingest.py [--messages 5000] [--size 4096] [--connections 20,1] [--rounds 1]
                                     [--smtp-processes 1] [--workers] [--baseline-env POSTROOM_X=1,...]

postroom runs as ``postroom serve`` on the embedded default (SQLite WAL + blob
folder in a fresh temp data dir), workers OFF unless ``--workers`` (this
measures durable receiving: blob fsynced and row committed before 250). The
sink is plain aiosmtpd with a handler that drops the mail. Load: bench/loadgen.py
(several client processes, no pipelining). Servers alternate per round so
machine noise hits both; the ratio is of medians. ``--baseline-env`` adds a third
server in the same rounds, postroom with those settings (e.g. the inline blob
tier off: POSTROOM_INLINE_BLOB_MAX=0), for an interleaved A/B.
"""

from __future__ import annotations

import os
import sys

# Run as a file, sys.path[0] is bench/, where bench/threading.py would shadow the stdlib: use the repo root.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import statistics  # noqa: E402

from bench.loadgen import run_load  # noqa: E402
from bench.servers import postroom, sink  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--connections", default="20,1", help="comma-separated connection counts")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--smtp-processes", type=int, default=1)
    parser.add_argument("--workers", action="store_true", help="also run the in-process pipeline workers")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--baseline-env", default="", help="also run postroom with these KEY=VALUE settings")
    args = parser.parse_args()

    print(f"{args.messages} msgs of {args.size} B; postroom: embedded default, workers "
          f"{'on' if args.workers else 'off'}, {args.smtp_processes} SMTP process(es)")
    print(f"{'server':<10} {'conns':>5} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6}")
    baseline = dict(kv.split("=", 1) for kv in args.baseline_env.split(",") if kv)
    names = ("sink", "postroom", "baseline") if baseline else ("sink", "postroom")
    if baseline:
        print(f"baseline = postroom with {baseline}")
    ratios: dict[int, float] = {}
    for conns in (int(c) for c in args.connections.split(",")):
        rates: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:
                server = sink() if name == "sink" else postroom(
                    processes=args.smtp_processes, workers=args.workers, env=baseline if name == "baseline" else None)
                with server as started:
                    port = started if isinstance(started, int) else started[0]
                    res = run_load("127.0.0.1", port, messages=args.messages, connections=conns, size=args.size,
                                   processes=min(args.clients, conns))
                rates[name].append(res["rate"])
                print(f"{name:<10} {conns:>5} {res['rate']:>9.0f} {res['p50_ms']:>8.2f} {res['p99_ms']:>8.2f} "
                      f"{res['failed']:>6.0f}", flush=True)
        ratios[conns] = statistics.median(rates["postroom"]) / statistics.median(rates["sink"])
        print(f"  median msgs/s: sink {statistics.median(rates['sink']):.0f}, postroom "
              f"{statistics.median(rates['postroom']):.0f}; ratio postroom/sink at {conns} connection(s): "
              f"{ratios[conns]:.2f}")
        if baseline:
            print(f"  median baseline {statistics.median(rates['baseline']):.0f}; postroom/baseline "
                  f"{statistics.median(rates['postroom']) / statistics.median(rates['baseline']):.2f}")
    if 20 in ratios:
        print(f"ratio postroom/sink at 20 connections: {ratios[20]:.2f}")


if __name__ == "__main__":
    main()
