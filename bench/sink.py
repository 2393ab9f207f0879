"""The baseline: plain aiosmtpd whose handler drops every message (``python bench/sink.py PORT``)."""

from __future__ import annotations

import signal
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class DropHandler:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


def main() -> None:
    port = int(sys.argv[1])
    controller = Controller(DropHandler(), hostname="127.0.0.1", port=port, decode_data=False,
                            enable_SMTPUTF8=True, data_size_limit=64 * 1024 * 1024)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"sink listening on 127.0.0.1:{port}", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
