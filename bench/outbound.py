"""Outbound throughput: render N staff replies, then queue + deliver N to a local aiosmtpd sink.

    .venv/bin/python bench/outbound.py [N] [--threads T]

Prints rendered msgs/s (template render + MIME build), sent msgs/s (render,
commit the row, claim, send over SMTP, record the attempt) and, as the
baseline in the same run, smtplib sending one pre-built message per
connection to the same sink. The sink runs in its own process so it does
not share the GIL with the sender.
"""

from __future__ import annotations

import argparse
import smtplib
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from postroom.app import App
from postroom.outbound import compose, delivery
from postroom.outbound.mime import build_message, to_bytes
from postroom.outbound.model import OutboundContext, Person, Staff
from postroom.settings import Settings
from postroom.storage import tenants
from postroom.testing import free_port

SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Drop:
    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 Ok: queued as X"
c = Controller(Drop(), hostname="127.0.0.1", port=int(sys.argv[1]), decode_data=False)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"""

TEXT = ("Hello {name},\n\nThank you for your message about the leak in unit {n}. Our plumber will come on "
        "Tuesday between 9:00 and 11:00; please make sure someone can open the door.\n\nKind regards")



def start_sink(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", type=int, nargs="?", default=500)
    parser.add_argument("--threads", type=int, default=1, help="delivery threads (the sink is always separate)")
    args = parser.parse_args()
    port = free_port()
    sink = start_sink(port)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), mail_domain="mail.test", outbound_url=f"smtp://127.0.0.1:{port}")
        app = App.open(settings)
        with app.session() as session:
            tenant = tenants.add_tenant(session, "acme", "Acme Builders")
        brand = compose.brand(app, tenant)
        elodie = Staff("Élodie Martin", "elodie@acme.example", "Élodie Martin\nAfter-sales, Acme Builders",
                       "<p><b>Élodie Martin</b><br>After-sales</p>")
        base = OutboundContext(kind="reply", tenant=brand, recipient=Person("Zoë Müller", "zoe@example.com"),
                               subject="Leak in the bathroom", reference="7K3M9Q", staff=elodie,
                               reply_address="reply+tok@acme.mail.test", in_reply_to="<c1@example.com>")
        contexts = [replace(base, text=TEXT.format(name="Zoë", n=i)) for i in range(args.n)]
        renderer = compose.renderer_for(app)
        renderer.render(contexts[0])  # compile templates outside the timing

        started = time.perf_counter()
        raws = [to_bytes(build_message(renderer.render(ctx), {}.__getitem__)) for ctx in contexts]
        rendered = rate(args.n, time.perf_counter() - started)

        started = time.perf_counter()
        for raw in raws:
            with smtplib.SMTP("127.0.0.1", port) as client:
                client.sendmail("reply+tok@acme.mail.test", ["zoe@example.com"], raw)
        baseline = rate(args.n, time.perf_counter() - started)

        started = time.perf_counter()
        ids = [compose.queue_message(app, ctx, tenant_id=tenant.id).id for ctx in contexts]
        queued = rate(args.n, time.perf_counter() - started)
        transport_for = delivery.default_transport(settings)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            outcomes = list(pool.map(lambda i: delivery.deliver(app, i, transport_for=transport_for).status, ids))
        delivered = rate(args.n, time.perf_counter() - started)
        end_to_end = args.n / (args.n / queued + args.n / delivered)
        app.close()
    sink.communicate("", timeout=10)
    assert outcomes.count("sent") == args.n, outcomes
    size = sum(map(len, raws)) / len(raws)
    print(f"messages: {args.n} replies of {size / 1024:.1f} kB, delivery threads: {args.threads}, database: SQLite")
    print(f"rendered (templates + MIME):       {rendered:8.0f} msgs/s")
    print(f"baseline smtplib, pre-built:       {baseline:8.0f} msgs/s")
    print(f"queued (render + commit row):      {queued:8.0f} msgs/s")
    print(f"delivered (claim, send, record):   {delivered:8.0f} msgs/s  = {delivered / baseline:.2f} x baseline")
    print(f"sent end to end (queue + deliver): {end_to_end:8.0f} msgs/s  = {end_to_end / baseline:.2f} x baseline")
    print(f"rendering vs. sending the baseline: {rendered / baseline:.1f} x")


if __name__ == "__main__":
    main()
