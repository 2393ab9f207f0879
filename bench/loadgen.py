"""SMTP load generator shared by the benchmarks: several client processes, asyncio raw streams.

No pipelining: each command waits for its reply, as a plain MTA would. Every
message is unique (a sequence header), because postroom stores content-
addressed and would otherwise deduplicate the load away. The clock for the
rate starts when every connection has said EHLO and stops at the last reply;
latency is measured from sending the end of DATA to reading the reply.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import re
import statistics
import time
from dataclasses import dataclass

FILLER = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut.\r\n"


def make_body(size: int) -> bytes:
    """A body of roughly ``size`` bytes in 98-byte CRLF lines (so no line needs dot-stuffing)."""
    header = (b"From: Load <load@example.com>\r\nTo: inbox@acme.mail.test\r\nSubject: load test\r\n"
              b"Message-ID: <%s@example.com>\r\n\r\n")
    lines = max(1, (size - len(header)) // len(FILLER))
    return header + FILLER * lines


@dataclass
class Result:
    sent: int
    failed: int
    started: float
    finished: float
    latencies: list[float]


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """One whole SMTP reply (its last line), however many continuation lines come first."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def _connection(host: str, port: int, rcpts: list[bytes], first: int, bodies: list[bytes],
                      ready: asyncio.Event, go: asyncio.Event, latencies: list[float], failures: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    await read_reply(reader)
    writer.write(b"EHLO loadgen.example.com\r\n")
    await read_reply(reader)
    ready.set()
    await go.wait()
    for n, body in enumerate(bodies, first):
        writer.write(b"MAIL FROM:<load@example.com>\r\n")
        await read_reply(reader)
        writer.write(b"RCPT TO:<" + rcpts[n % len(rcpts)] + b">\r\n")
        await read_reply(reader)
        writer.write(b"DATA\r\n")
        if not (await read_reply(reader)).startswith(b"354"):
            failures.append(1)
            continue
        writer.write(body)
        writer.write(b".\r\n")
        sent = time.perf_counter()
        reply = await read_reply(reader)
        latencies.append(time.perf_counter() - sent)
        if not reply.startswith(b"250"):
            failures.append(1)
    writer.write(b"QUIT\r\n")
    await read_reply(reader)
    writer.close()


_MESSAGE_ID = re.compile(rb"^Message-ID:[^\r]*\r\n", re.IGNORECASE | re.MULTILINE)


def wire_form(raw: bytes, unique: str) -> bytes:
    """A stored message as DATA bytes: CRLF lines, dot-stuffed, with a fresh Message-ID."""
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    header = b"Message-ID: <%s@bench.example.com>\r\n" % unique.encode()
    raw = _MESSAGE_ID.sub(lambda _: header, raw, count=1) if _MESSAGE_ID.search(raw) else header + raw
    raw = raw.replace(b"\r\n.", b"\r\n..")
    return b"." + raw if raw.startswith(b".") else raw


async def _client(host: str, port: int, rcpt: str, size: int, counts: list[int], offset: int,
                  corpus: list[bytes] | None, barrier: mp.Barrier) -> Result:  # type: ignore[valid-type]
    template = make_body(size)
    seq = offset
    plans: list[tuple[int, list[bytes]]] = []
    for count in counts:
        first = seq
        bodies = []
        for _ in range(count):
            unique = f"{os.getpid()}.{seq}.{time.time_ns()}"
            bodies.append(wire_form(corpus[seq % len(corpus)], unique) if corpus else template % unique.encode())
            seq += 1
        plans.append((first, bodies))
    latencies: list[float] = []
    failures: list[int] = []
    go = asyncio.Event()
    readies = [asyncio.Event() for _ in plans]
    rcpts = [r.encode() for r in rcpt.split(",")]
    tasks = [asyncio.create_task(_connection(host, port, rcpts, first, bodies, ready, go, latencies, failures))
             for (first, bodies), ready in zip(plans, readies, strict=True)]
    for ready in readies:
        await ready.wait()
    await asyncio.get_running_loop().run_in_executor(None, barrier.wait)  # type: ignore[attr-defined]
    started = time.monotonic()
    go.set()
    await asyncio.gather(*tasks)
    return Result(len(latencies) - len(failures), len(failures), started, time.monotonic(), latencies)


def _process(args: tuple, barrier: mp.Barrier, out: mp.Queue) -> None:  # type: ignore[valid-type]
    try:
        out.put(asyncio.run(_client(*args, barrier)))
    except BaseException as exc:
        barrier.abort()  # type: ignore[attr-defined]
        out.put(RuntimeError(f"load client failed: {exc!r}"))


def run_load(host: str, port: int, *, messages: int, connections: int, size: int = 4096,
             rcpt: str = "inbox@acme.mail.test", processes: int = 2,
             corpus: list[bytes] | None = None) -> dict[str, float]:
    """Send ``messages`` of ``size`` bytes (or taken in turn from ``corpus``) over ``connections``.

    ``rcpt`` may list several recipients, comma-separated: message n goes to the n-th, in turn.

    Returns rate and latency figures.
    """
    processes = max(1, min(processes, connections))
    per_conn = [messages // connections + (1 if i < messages % connections else 0) for i in range(connections)]
    groups = [per_conn[i::processes] for i in range(processes)]
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(processes)
    offsets = [sum(sum(g) for g in groups[:i]) for i in range(processes)]
    out: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_process, args=((host, port, rcpt, size, g, off, corpus), barrier, out))
             for g, off in zip(groups, offsets, strict=True)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=3600) for _ in procs]
    for proc in procs:
        proc.join()
    for res in results:
        if isinstance(res, Exception):
            raise res
    elapsed = max(r.finished for r in results) - min(r.started for r in results)
    lat = sorted(x for r in results for x in r.latencies)
    sent = sum(r.sent for r in results)
    return {
        "sent": sent, "failed": sum(r.failed for r in results), "seconds": elapsed, "rate": sent / elapsed,
        "p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }
