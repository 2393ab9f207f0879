"""The systemd units, compose.yaml and the Containerfile start real postroom commands, hardened as mail daemons are.

systemd-analyze verify parses the units (with ExecStart pointed at this
venv's postroom, since it checks the binary exists); every command line the
deploy files run is given to postroom's click group with --help, so a renamed command
or flag fails here rather than on a production host.
"""

from __future__ import annotations

import configparser
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from postroom.cli import cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = DEPLOY / "systemd"
POSTROOM = str(Path(sys.executable).with_name("postroom"))
INSTALLED = "/opt/postroom/bin/postroom"
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "User": "postroom", "Restart": "on-failure", "ReadWritePaths": "/var/lib/postroom"}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def postroom_args(command: list[str]) -> list[str]:
    """The arguments after the postroom executable in a command line."""
    assert command[0] in (INSTALLED, "postroom"), command
    return command[1:]


def assert_real_command(args: list[str]) -> None:
    """The command and its flags exist: click refuses an unknown one with exit code 2 even before --help."""
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0 and result.output.startswith("Usage: "), (args, result.output)


@pytest.mark.parametrize("name", ["postroom.service", "postroom-worker@.service"])
def test_units_are_hardened_and_run_real_commands(name: str) -> None:
    service = unit(name)["Service"]
    for key, value in HARDENING.items():
        assert service[key] == value, (name, key)
    assert {"Unit", "Service", "Install"} <= set(unit(name).sections())
    args = postroom_args(shlex.split(service["ExecStart"]))
    assert "--no-migrate" in args
    assert_real_command(args)
    if "serve" in args:
        assert ":25" in service["Environment"]
        assert service["CapabilityBoundingSet"] == service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    else:
        assert service["CapabilityBoundingSet"] == "" and args[0] == "worker"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    for path in UNITS.glob("*.service"):
        (tmp_path / path.name).write_text(path.read_text().replace(INSTALLED, POSTROOM))
    done = subprocess.run(["systemd-analyze", "verify", *sorted(map(str, tmp_path.glob("*.service")))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr
    (tmp_path / "broken.service").write_text("[Service]\nExecStart=/nonexistent/postroom serve\n")
    assert subprocess.run(["systemd-analyze", "verify", str(tmp_path / "broken.service")],
                          capture_output=True, timeout=60).returncode != 0


def test_compose_runs_init_once_then_serve_and_workers() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "minio", "init", "serve", "worker"} <= set(services)
    assert services["init"]["restart"] == "no" and services["init"]["command"] == ["init"]
    for name in ("serve", "worker"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert "--no-migrate" in services[name]["command"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert "/readyz" in " ".join(services["serve"]["healthcheck"]["test"])
    env = services["serve"]["environment"]
    assert env["POSTROOM_BLOB_URL"].startswith("s3://") and env["POSTROOM_BROKER_URL"].startswith("redis://")
    assert env["POSTROOM_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert set(compose["volumes"]) >= {"postgres-data", "minio-data", "postroom-data"}
    for name in ("init", "serve", "worker"):
        assert_real_command(services[name]["command"])


def test_containerfile_default_command_is_real() -> None:
    lines = (DEPLOY / "Containerfile").read_text().splitlines()
    entrypoint = json.loads(next(line for line in lines if line.startswith("ENTRYPOINT "))[len("ENTRYPOINT "):])
    command = json.loads(next(line for line in lines if line.startswith("CMD "))[len("CMD "):])
    assert entrypoint == ["postroom"] and any(line.startswith("USER postroom") for line in lines)
    assert_real_command(command)


def test_containerfile_installs_the_fonts_pdf_exports_look_for() -> None:
    """exports/fonts.py looks for DejaVu Sans and the Noto faces in Debian's folders: the image must have them."""
    text = (DEPLOY / "Containerfile").read_text()
    for package in ("fonts-dejavu-core", "fonts-noto-core", "fonts-noto-cjk", "fonts-noto-color-emoji"):
        assert package in text, package
