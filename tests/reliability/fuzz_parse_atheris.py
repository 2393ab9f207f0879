"""atheris harness for ``postroom.parsing.parse`` (run with libFuzzer flags, e.g. -max_total_time=60).

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
    args = list(sys.argv)
    if SEEDS.is_dir() and not any(not a.startswith("-") for a in args[1:]):
        args.append(str(SEEDS))  # fixtures are the seed corpus (read only: new inputs stay in memory)
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
