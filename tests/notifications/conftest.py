"""The outbound tests' real relay and service (``running``, ``customer``), plus the real CLI against them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner
from tests.outbound.conftest import customer, fast, relay, running, start_relay  # noqa: F401 (fixtures)

from postroom.cli import cli
from postroom.errors import PostroomError
from postroom.settings import Settings


@pytest.fixture
def run(fast: Settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:  # noqa: F811
    """``postroom ARGS`` through click with the service's settings; 'error: …' for an expected failure."""
    for name in ("data_dir", "database_url", "mail_domain", "outbound_url", "blob_url", "inline_blob_max"):
        monkeypatch.setenv(f"POSTROOM_{name.upper()}", str(getattr(fast, name)))

    def invoke(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=code != 0)
        if code and isinstance(result.exception, PostroomError):
            return f"error: {result.exception}"
        assert result.exit_code == code, result.output
        return result.output

    return invoke
