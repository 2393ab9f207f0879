"""A small, bounded run of bench/crash.py: SIGKILL the real server mid-send and mid-stage, lose nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from postroom.settings import Settings

CRASH = Path(__file__).resolve().parents[2] / "bench" / "crash.py"


def test_kill_9_mid_send_and_mid_stage_loses_and_duplicates_nothing(settings: Settings, tmp_path: Path) -> None:
    figures_file = tmp_path / "crash.json"
    result = subprocess.run(
        [sys.executable, str(CRASH), "--messages", "200", "--kills", "2", "--connections", "12",
         "--timeout", "60", "--settle", "30", "--database-url", settings.database_url, "--json", str(figures_file)],
        capture_output=True, text=True, timeout=110,
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[-1] == "acknowledged 200, stored 200, duplicated 0, lost 0"
    figures = json.loads(figures_file.read_text())
    assert figures["kills"] >= 2
    assert figures["refused"] > 0, "the kills should have cost some SMTP attempts, which were retried"
