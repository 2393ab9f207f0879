"""IMAP ingress under kill -9: N messages in a real Dovecot, `postroom mailbox run` killed at random points.

Prints lost/duplicated counts (both must be 0) and the fetch rate of an uninterrupted run
as the baseline for the interrupted one's. Run by hand: .venv/bin/python bench/ingress_crash.py [N] [KILLS]
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "ingress"))
from conftest import PASSWORD, Dovecot  # noqa: E402
from postroom.app import App  # noqa: E402
from postroom.settings import Settings  # noqa: E402
from postroom.storage import ingress, tenants  # noqa: E402
from postroom.storage.tables import InboundMessage  # noqa: E402
from postroom.testing import make_eml, wait_until  # noqa: E402

SENT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def rows(app: App) -> int:
    with app.session() as session:
        return session.scalar(select(func.count()).select_from(InboundMessage))


def run(count: int, kills: int) -> tuple[float, int, int]:
    dovecot = Dovecot().start()
    data = Path(tempfile.mkdtemp(prefix="postroom-bench-"))
    settings = Settings(data_dir=data, mail_domain="mail.test")
    app = App.open(settings)
    env = {**os.environ, "POSTROOM_DATA_DIR": str(data), "POSTROOM_MAIL_DOMAIN": "mail.test",
           "POSTROOM_IMAP_LEASE_SECONDS": "2", "POSTROOM_IMAP_MAX_BACKOFF_SECONDS": "1"}
    try:
        with app.session() as session:
            tenants.add_tenant(session, "acme")
            ingress.add_mailbox(session, "acme", dovecot.url(), auth="password", secret=PASSWORD, after="seen")
        dovecot.append([make_eml(subject=f"bench {n}", message_id=f"<b{n}@example.com>", date=SENT)
                        for n in range(count)])
        started = time.perf_counter()
        for _ in range(kills):
            proc = subprocess.Popen([sys.executable, "-m", "postroom", "mailbox", "run"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            target = rows(app) + random.randint(1, max(1, count // (kills + 1)))
            wait_until(lambda t=target: rows(app) >= t or rows(app) >= count, timeout=120, interval=0.005)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc = subprocess.Popen([sys.executable, "-m", "postroom", "mailbox", "run"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: rows(app) >= count, timeout=600)
        elapsed = time.perf_counter() - started
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        stored = rows(app)
        with app.session() as session:
            distinct = session.scalar(select(func.count(func.distinct(InboundMessage.sha256))))
        return elapsed, count - distinct, stored - distinct
    finally:
        app.close()
        dovecot.close()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    kills = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    base, lost0, dup0 = run(count, 0)
    crashed, lost, dup = run(count, kills)
    print(f"{count} messages, uninterrupted: {base:.1f} s ({count / base:.0f} msg/s), lost {lost0}, duplicated {dup0}")
    print(f"{count} messages, {kills} x kill -9: {crashed:.1f} s ({crashed / base:.2f}x the uninterrupted run), "
          f"lost {lost}, duplicated {dup}")


if __name__ == "__main__":
    main()
