"""Shared helpers for the parsing tests: fixture mail lives in fixtures/emails."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.model import ParsedMessage
from postroom.parsing import parse

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "emails"


@pytest.fixture(scope="session")
def parsed() -> dict[str, ParsedMessage]:
    """Every fixture parsed once (the tests only read the results)."""
    return {p.name: parse(p.read_bytes()) for p in sorted(FIXTURES.glob("*.eml"))}
