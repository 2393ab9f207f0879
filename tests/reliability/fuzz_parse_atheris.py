"""atheris harness for ``postroom.parsing.parse`` (libFuzzer flags, e.g. -max_total_time=60, then directories).

Any exception other than ParseFailed, a ParseHung past the time bound, or
libFuzzer's own -timeout / -rss_limit_mb is a crash and exits non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["postroom.parsing", "email"]):
    from parse_budget import checked_parse

SEEDS = Path(__file__).resolve().parents[2] / "fixtures" / "emails"


def test_one_input(data: bytes) -> None:
    checked_parse(data, seconds=5)


def main() -> None:
    """Usage: fuzz_parse_atheris.py [libFuzzer flags] CORPUS_DIR [SEED_DIR...]; libFuzzer writes new inputs
    into CORPUS_DIR (it exits the process itself, so the caller owns that directory)."""
    if not any(not a.startswith("-") for a in sys.argv[1:]):
        sys.exit(f"usage: {sys.argv[0]} [libFuzzer flags] CORPUS_DIR [SEED_DIR...]  (seeds: {SEEDS})")
    atheris.Setup(list(sys.argv), test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
