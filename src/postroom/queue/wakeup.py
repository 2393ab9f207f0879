"""Hand ids a command just committed to the workers at once, instead of leaving them for the next sweep.

With a broker URL the command enqueues them itself. On the embedded default
the workers live inside ``postroom serve``, whose in-process broker no other
process can reach, so ``serve`` listens on a Unix datagram socket in its data
folder and a command sends it the ids. The socket carries only row ids: the
database stays the record, the pipeline claims each row as usual, and when
no ``serve`` is listening nothing is lost (every unfinished row is enqueued
again when ``serve`` starts and by its sweep).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from postroom.app import App

log = logging.getLogger(__name__)

MAX_DATAGRAM = 65_536
IDS_PER_DATAGRAM = 2_000  # well inside one datagram as JSON
MAX_PATH = 100  # sun_path holds 108 bytes; longer data folders use an abstract name

Dispatch = Callable[[Iterable[int]], None]


def socket_address(data_dir: Path) -> str:
    """The serve process's wake-up socket for this data folder."""
    path = str(Path(data_dir).resolve() / "wake.sock")
    if len(path.encode()) <= MAX_PATH:
        return path
    return "\0postroom-wake-" + hashlib.sha256(path.encode()).hexdigest()[:32]


def wake(app: App, *, inbound: Sequence[int] = (), outbound: Sequence[int] = ()) -> bool:
    """Send the ids to the workers now; False when no running ``serve`` heard it (the sweep will act)."""
    if not inbound and not outbound:
        return True
    if app.settings.broker_url:
        from postroom.queue.runtime import sender

        pipeline = sender(app)
        pipeline.dispatch(inbound)
        pipeline.dispatch_outbound(outbound)
        return True
    address = socket_address(app.settings.data_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            for kind, ids in (("inbound", list(inbound)), ("outbound", list(outbound))):
                for start in range(0, len(ids), IDS_PER_DATAGRAM):
                    sock.sendto(json.dumps({kind: ids[start:start + IDS_PER_DATAGRAM]}).encode(), address)
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


def _ids(value: object) -> list[int]:
    """A datagram's list of row ids; anything else in it is ignored."""
    if not isinstance(value, list):
        return []
    return [i for i in value if isinstance(i, int) and not isinstance(i, bool) and i > 0]


class WakeListener:
    """The ``serve`` side: a thread receiving ids and handing them to the pipeline's dispatchers."""

    def __init__(self, data_dir: Path, inbound: Dispatch, outbound: Dispatch) -> None:
        self.address = socket_address(data_dir)
        self._dispatch = {"inbound": inbound, "outbound": outbound}
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> WakeListener:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if not self.address.startswith("\0"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)  # left by a serve that was killed
        old_mask = os.umask(0o177)  # only this user may wake the service
        try:
            sock.bind(self.address)
        finally:
            os.umask(old_mask)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="postroom-wake", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                message = json.loads(data)
            except ValueError:
                log.warning("wake-up socket: ignored a datagram that is not JSON")
                continue
            for kind, dispatch in self._dispatch.items():
                ids = _ids(message.get(kind)) if isinstance(message, dict) else []
                if ids:
                    dispatch(ids)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
            if not self.address.startswith("\0"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.address)
