"""Peak RSS of the gateway while 20 clients each send a 25 MiB message at once (issue 9).

    .venv/bin/python bench/memory.py [--clients 20] [--mib 25] [--smtp-processes 1]

postroom runs as ``postroom serve --no-workers`` on the embedded default; the
aiosmtpd sink (standard line-by-line DATA path, drops the message) is measured
the same way for comparison. Peak RSS is the sum of VmHWM over the server's
process tree. Target: below 3 x bytes in flight + 100 MiB.
"""

from __future__ import annotations

import os
import sys

# Run as a file, sys.path[0] is bench/, where bench/threading.py would shadow the stdlib: use the repo root.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.loadgen import run_load  # noqa: E402
from bench.servers import postroom, server_pids, sink  # noqa: E402

MIB = 1024 * 1024


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(name: str, server, clients: int, size: int) -> None:  # type: ignore[no-untyped-def]
    with server as started:
        port = started if isinstance(started, int) else started[0]
        pids = server_pids(port)
        before = sum(_status(p, "VmRSS") for p in pids)
        res = run_load("127.0.0.1", port, messages=clients, connections=clients, size=size, processes=4)
        peak = sum(_status(p, "VmHWM") for p in pids)
    in_flight = clients * size
    target = 3 * in_flight + 100 * MIB
    print(f"{name:<10} sent {res['sent']:.0f} failed {res['failed']:.0f} in {res['seconds']:.1f} s; "
          f"RSS idle {before / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB = {peak / in_flight:.2f} x in flight; "
          f"target {target / MIB:.0f} MiB: {'met' if peak < target else 'MISSED'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--mib", type=float, default=25)
    parser.add_argument("--smtp-processes", type=int, default=1)
    args = parser.parse_args()
    size = int(args.mib * MIB) - 64 * 1024  # the whole message, as sent, must fit the 25 MiB default limit
    print(f"{args.clients} clients x {size / MIB:.2f} MiB = {args.clients * size / MIB:.0f} MiB in flight")
    measure("sink", sink(), args.clients, size)
    measure("postroom", postroom(processes=args.smtp_processes), args.clients, size)


if __name__ == "__main__":
    main()
