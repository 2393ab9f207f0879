"""The command line as people and scripts use it: real `postroom` processes."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
from pathlib import Path

import pytest

from postroom.testing import make_eml


@pytest.fixture
def run(settings):
    env = {**os.environ, "POSTROOM_DATA_DIR": str(settings.data_dir), "POSTROOM_MAIL_DOMAIN": "mail.test",
           "POSTROOM_DATABASE_URL": settings.database_url, "POSTROOM_BROKER_URL": ""}

    def postroom(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "postroom", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    return postroom


def test_tenant_ingest_and_queue_round_trip(run, tmp_path: Path):
    assert run("tenant", "add", "acme", "--name", "Acme Builders").returncode == 0
    again = run("tenant", "add", "acme", "--exist-ok")
    assert again.returncode == 0 and again.stdout.startswith("tenant acme exists")
    assert run("tenant", "add", "acme").returncode == 1
    assert run("tenant", "alias", "add", "acme", "support").returncode == 0
    listing = run("tenant", "list")
    assert "acme.mail.test" in listing.stdout and "support" in listing.stdout
    box = mailbox.mbox(tmp_path / "in.mbox")
    for n in range(3):
        box.add(make_eml(subject=f"cli {n}"))
    box.flush()
    ingested = run("ingest", "--tenant", "acme", str(tmp_path / "in.mbox"), "--json")
    assert ingested.returncode == 0, ingested.stderr
    summary = json.loads(ingested.stdout)
    assert summary["stored"] == 3 and summary["processed"] == {"done": 3}
    shape = json.loads(run("queue", "--json").stdout)
    assert [(line["stage"], line["status"], line["count"]) for line in shape] == [("done", "done", 3)]
    assert shape[0]["ages"] == {"<5m": 3, "<1h": 0, "<1d": 0, "older": 0}
    table = run("queue").stdout.splitlines()
    assert table[0].split() == ["STAGE", "STATUS", "COUNT", "<5m", "<1h", "<1d", "older", "OLDEST"]
    assert table[2].split()[:7] == ["done", "done", "3", "3", "0", "0", "0"]
    shown = json.loads(run("queue", "show", str(summary["ids"][0]), "--json").stdout)
    assert shown["subject"] == "cli 0" and shown["status"] == "done"


def test_errors_are_one_line_with_a_meaningful_exit_code(run):
    missing = run("ingest", "--tenant", "nope", __file__)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        "error: no tenant 'nope'; create it with: postroom tenant add nope"]
    assert run("queue", "show", "999").returncode == 1
    usage = run("queue", "retry")
    assert usage.returncode == 2 and "give either an ID or --failed" in usage.stderr
    bad_slug = run("tenant", "add", "Not A Slug!")
    assert bad_slug.returncode == 1 and "DNS label" in bad_slug.stderr


def test_retry_puts_failed_messages_back(run, settings, tmp_path: Path):
    run("tenant", "add", "acme")
    (tmp_path / "one.eml").write_bytes(make_eml())
    stored = run("ingest", "--tenant", "acme", str(tmp_path / "one.eml"), "--no-process", "--json")
    ids = json.loads(stored.stdout)["ids"]
    refused = run("queue", "retry", str(ids[0]))
    assert refused.returncode == 1 and "is pending" in refused.stderr
    assert run("queue", "hold", str(ids[0])).returncode == 0
    assert json.loads(run("queue", "show", str(ids[0]), "--json").stdout)["status"] == "held"
    assert run("queue", "retry", str(ids[0])).returncode == 0
    assert json.loads(run("queue", "show", str(ids[0]), "--json").stdout)["status"] == "pending"
