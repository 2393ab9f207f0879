"""deploy/run_local.py: the compose topology as processes (PostgreSQL, Redis, moto S3, init, serve, 2 workers).

Containers cannot run on the CI machine, so this is how the production
topology is checked end to end: the script is run as an operator would,
and it exits 0 only once a mail sent over SMTP was processed by the
separate workers with its raw bytes in the S3 bucket.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy/run_local.py"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not (_listening(5432) and _listening(6379)),
                    reason="needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (see .ci/services.sh)")
@pytest.mark.timeout(120)
def test_compose_topology_as_processes_moves_mail() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "run_local: ok"
    assert any(line.startswith("mail processed by the workers; 1 object(s) in s3://") for line in lines), lines
    assert "Traceback" not in done.stderr
