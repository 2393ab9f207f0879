"""Secrets come from configuration and never reach a log line or the startup banner.

Runs the real ``postroom serve -v`` (debug logging) with every secret set,
a password-protected private Redis as broker, a PostgreSQL URL with a password
when the suite runs on PostgreSQL, and an SMTP client that tries AUTH with
credentials; then scans everything the process wrote.
"""

from __future__ import annotations

import base64
import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url

from postroom.app import App
from postroom.settings import Settings, load_settings, redact_url
from postroom.storage import tenants
from postroom.storage.tables import InboundMessage, Tenant
from postroom.testing import RedisProcess, free_port, make_eml, wait_until

OPERATOR_TOKEN = "op-token-9f8e7d6c5b4a"
WEBHOOK_SECRET = "whsec-3c2b1a0f9e8d"
REDIS_PASSWORD = "redis-pw-77aa66bb"
PG_PASSWORD = "pg-pw-55cc44dd"
SMTP_PASSWORD = "smtp-pw-33ee22ff"



def test_no_secret_in_logs_or_banner(settings: Settings, tmp_path: Path) -> None:
    redis = RedisProcess(password=REDIS_PASSWORD).start()
    database_url = settings.database_url
    if database_url:  # PostgreSQL here accepts any password, so one can be set to see whether it leaks
        database_url = make_url(database_url).set(password=PG_PASSWORD).render_as_string(hide_password=False)
    port = free_port()
    env = {**os.environ, "POSTROOM_DATA_DIR": str(settings.data_dir), "POSTROOM_MAIL_DOMAIN": "mail.test",
           "POSTROOM_SMTP_LISTEN": f"127.0.0.1:{port}", "POSTROOM_HTTP_LISTEN": "127.0.0.1:0",
           "POSTROOM_DATABASE_URL": database_url, "POSTROOM_BROKER_URL": redis.url,
           "POSTROOM_OPERATOR_TOKEN": OPERATOR_TOKEN, "POSTROOM_PORTAL_WEBHOOK_SECRET": WEBHOOK_SECRET}
    configured = load_settings(environ=env)
    assert configured.operator_token == OPERATOR_TOKEN and configured.broker_url == redis.url
    app = App.open(configured)
    with app.session() as session:
        tenants.add_tenant(session, "acme")
        tenant_secret = session.scalar(select(Tenant.secret))
    log_file = tmp_path / "serve.log"
    try:
        with log_file.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-c", "from postroom.cli import main; main()", "serve", "-v"],
                                    env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: b"listening" in log_file.read_bytes() or proc.poll() is not None, timeout=30)
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.ehlo("leaky.example")
                plain = base64.b64encode(f"\0staff@acme.example\0{SMTP_PASSWORD}".encode()).decode()
                assert client.docmd("AUTH", f"PLAIN {plain}")[0] >= 500, "no AUTH on the inbound gateway"
                client.docmd("AUTH", "LOGIN " + base64.b64encode(SMTP_PASSWORD.encode()).decode())
                client.sendmail("x@example.com", ["inbox@acme.mail.test"], make_eml())

            def processed() -> bool:
                with app.session() as session:
                    return session.scalar(select(InboundMessage.status)) == "done"

            wait_until(processed, timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    finally:
        redis.kill()
        app.close()
    written = log_file.read_text(errors="replace")
    assert "postroom listening" in written and "broker redis://:***@" in written
    for secret in (OPERATOR_TOKEN, WEBHOOK_SECRET, REDIS_PASSWORD, PG_PASSWORD, SMTP_PASSWORD, tenant_secret, plain,
                   base64.b64encode(SMTP_PASSWORD.encode()).decode()):
        assert secret not in written, f"a secret reached the log: {secret[:6]}…"
    for secret in (OPERATOR_TOKEN, WEBHOOK_SECRET):
        assert secret not in repr(configured)


def test_redact_url() -> None:
    assert redact_url("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("postgresql+psycopg://u:pw@h:5432/d") == "postgresql+psycopg://u:***@h:5432/d"
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
