"""The gateway's fast SMTP path (gateway/protocol) against stock aiosmtpd, same handler, same durability (issue 15).

    .venv/bin/python bench/protocol.py [--messages 2000] [--lone-messages 1000] [--sessions 20] [--runs 3]
                                       [--sizes 4096,65536] [--modes "per connection,per session,one session"]

Each server is a child process running what ``postroom serve --no-workers``
runs for SMTP, on the embedded default in a fresh temp data dir (SQLite WAL +
blob folder; every message durable before 250, group commit): the app, the
group committer, ``GatewayHandler`` (directory, rate limits off, DATA-time
screen) and ``Gateway``. Only the protocol object per connection differs:
"fast" is ``GatewaySMTP``, "stock" is aiosmtpd's ``SMTP`` with the same
options. Accepted ids are dropped (no pipeline), in both.

Loads, from this process (asyncio, no pipelining), at each size: "per
connection", where each of ``--sessions`` clients connects, says EHLO, MAIL,
RCPT, DATA and QUIT for every message; "per session", the same clients each
sending their share over one connection; "one session", one connection
sending ``--lone-messages`` one after the other. Fast and stock alternate for
every load of every run; the summary gives medians of msgs/s and of the CPU
time (user + system) the server process spent per message, and the ratios.
"""

from __future__ import annotations

import os
import sys

# Run as a file, sys.path[0] is bench/, where bench/threading.py would shadow the stdlib: use the repo root.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.loadgen import make_body, read_reply  # noqa: E402
from bench.servers import POSTROOM, cpu_seconds, free_port, postroom_env, stop_process, wait_for_smtp  # noqa: E402

KINDS = ("fast", "stock")
MODES = {"per connection": True, "per session": False, "one session": False}  # name: a connection per message
RCPT = b"inbox@acme.mail.test"


def serve(kind: str) -> None:
    """The child: one gateway with the ``kind`` protocol, settings from POSTROOM_*, until SIGTERM."""
    from postroom.app import App
    from postroom.gateway.handler import GatewayHandler
    from postroom.gateway.protocol import SMTP
    from postroom.gateway.ratelimit import rate_limits
    from postroom.gateway.screen import DataScreen
    from postroom.gateway.server import Gateway
    from postroom.settings import load_settings
    from postroom.storage.intake import GroupCommitter

    class StockGateway(Gateway):
        def _factory(self) -> SMTP:  # type: ignore[override]
            return SMTP(self.handler, hostname=self.hostname, data_size_limit=self.data_size_limit,
                        enable_SMTPUTF8=True, decode_data=False, timeout=self.timeout, loop=self.loop,
                        tls_context=self.tls_context, require_starttls=False, ident="postroom ESMTP")

    settings = load_settings()
    app = App.open(settings)
    committer = GroupCommitter(app.sessions, app.blobs)
    handler = GatewayHandler(app.directory, committer.submit, lambda ids: None,
                             max_recipients=settings.max_recipients, limits=rate_limits(settings),
                             screen=DataScreen(settings, app.directory).check)
    host, port = settings.smtp_address
    gateway = (Gateway if kind == "fast" else StockGateway)(
        handler, host, port, hostname=settings.mail_domain, data_size_limit=settings.max_message_size,
        max_connections_per_ip=settings.max_connections_per_ip, timeout=settings.smtp_timeout,
        data_timeout=settings.smtp_data_timeout)
    gateway.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    gateway.stop()


@contextmanager
def server(kind: str) -> Iterator[tuple[int, int]]:
    """(port, pid) of a ``kind`` gateway child on a fresh data dir."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="postroom-bench-protocol-") as tmp:
        env = postroom_env(Path(tmp) / "data", port)
        subprocess.run([POSTROOM, "tenant", "add", "acme"], env=env, check=True, stdout=subprocess.DEVNULL)
        proc = subprocess.Popen([sys.executable, __file__, "--serve", kind], env=env)
        try:
            wait_for_smtp(port)
            yield port, proc.pid
        finally:
            stop_process(proc)


async def _transaction(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
    """MAIL, RCPT, DATA and the body; whether the message was accepted."""
    for command in (b"MAIL FROM:<load@example.com>\r\n", b"RCPT TO:<" + RCPT + b">\r\n", b"DATA\r\n"):
        writer.write(command)
        if not (await read_reply(reader)).startswith((b"250", b"354")):
            return False
    writer.write(body + b".\r\n")
    return (await read_reply(reader)).startswith(b"250")


async def _session(port: int, bodies: Iterator[bytes], accepted: list[bool], *, per_connection: bool) -> None:
    """One client: a connection per message, or one connection for all it takes from ``bodies``."""
    connection = None
    for body in bodies:
        if connection is None:
            connection = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
            await read_reply(connection[0])
            connection[1].write(b"EHLO bench.example.com\r\n")
            await read_reply(connection[0])
        accepted.append(await _transaction(*connection, body))
        if per_connection:
            await _quit(*connection)
            connection = None
    if connection is not None:
        await _quit(*connection)


async def _quit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"QUIT\r\n")
    await read_reply(reader)
    writer.close()
    await writer.wait_closed()


def send(port: int, *, messages: int, size: int, sessions: int, per_connection: bool) -> tuple[float, int]:
    """Send ``messages`` unique messages of about ``size`` bytes; (messages/s, refused)."""
    template = make_body(size)
    bodies = iter([template % f"{os.getpid()}.{n}.{time.time_ns()}".encode() for n in range(messages)])
    accepted: list[bool] = []

    async def run() -> None:
        await asyncio.gather(*(_session(port, bodies, accepted, per_connection=per_connection)
                               for _ in range(sessions)))

    started = time.monotonic()
    asyncio.run(run())
    return messages / (time.monotonic() - started), accepted.count(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages of each per-connection/session load")
    parser.add_argument("--lone-messages", type=int, default=1000, help="messages of each one-session load")
    parser.add_argument("--sessions", type=int, default=20, help="concurrent clients of the other loads")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="4096,65536")
    parser.add_argument("--modes", default=",".join(MODES), help=f"any of {', '.join(MODES)}")
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    loads = [(mode, size) for mode in modes for size in map(int, args.sizes.split(","))]
    rates: dict[tuple[str, int, str], list[float]] = {}
    cpus: dict[tuple[str, int, str], list[float]] = {}
    print(f"per connection/session: {args.messages} msgs over {args.sessions} clients, a connection per message/"
          f"client; one session: {args.lone_messages} msgs over one connection; {args.runs} runs, fast and stock "
          "alternating")
    for _ in range(args.runs):
        for mode, size in loads:
            for kind in KINDS:
                per_connection = MODES[mode]
                lone = mode == "one session"
                messages, sessions = (args.lone_messages, 1) if lone else (args.messages, args.sessions)
                with server(kind) as (port, pid):
                    before = cpu_seconds({pid})
                    rate, refused = send(port, messages=messages, size=size, sessions=sessions,
                                         per_connection=per_connection)
                    cpu = (cpu_seconds({pid}) - before) / messages * 1e6
                if refused:
                    sys.exit(f"{kind} refused {refused} of {messages} messages")
                rates.setdefault((mode, size, kind), []).append(rate)
                cpus.setdefault((mode, size, kind), []).append(cpu)
                print(f"  {mode:<14} {size:>6} B {kind:<5} {rate:7.0f} msgs/s {cpu:6.0f} us CPU/msg", flush=True)
    print("\n| load | fast msgs/s | stock msgs/s | fast/stock | fast CPU us/msg | stock CPU us/msg | stock/fast |")
    print("|---|---|---|---|---|---|---|")
    for mode, size in loads:
        rate = {kind: statistics.median(rates[mode, size, kind]) for kind in KINDS}
        cpu = {kind: statistics.median(cpus[mode, size, kind]) for kind in KINDS}
        print(f"| {mode}, {size // 1024}K | {rate['fast']:.0f} | {rate['stock']:.0f} "
              f"| {rate['fast'] / rate['stock']:.2f} | {cpu['fast']:.0f} | {cpu['stock']:.0f} "
              f"| {cpu['stock'] / cpu['fast']:.2f} |")


if __name__ == "__main__":
    main()
