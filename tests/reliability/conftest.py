"""Lets the parser fuzz tests and the atheris harness share ``parse_budget`` (tests use importlib mode)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
