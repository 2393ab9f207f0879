"""Cost of hostile mail (issue 14): CPU and peak memory of ``postroom parse`` and of the whole pipeline.

Usage: python bench/hostile.py [--sizes 64K,256K,1M,4M] [--families a,b] [--no-pipeline] [--write]

Each family of tests/parsing/hostile_mail.py is generated at each size and run in a child process,
whose CPU (user + system) and peak RSS are read from its rusage (``os.wait4``):

- parse: ``python -m postroom parse --json FILE``;
- pipeline: ``python -m postroom ingest --tenant acme FILE`` into a fresh data folder on SQLite
  (without a broker the command stores the row, then runs ``flow.process_inbound`` on it).

A ~1 KB ordinary message is run the same way as the baseline (interpreter start and imports); the
CPU of the ``parse`` call alone is also read inside a child (the CLI's imports cost ~2.5 s of
CPU on a loaded machine, which drowns small figures). Growth per doubling is
``(cpu(N2) / cpu(N1)) ** (1 / log2(N2 / N1))``, on parse() CPU and on net pipeline CPU, so a linear
stage shows ~2.0 and a quadratic one ~4.0. ``--write`` replaces the
"hostile" section of bench/RESULTS.md with the table. Run by hand.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.parsing.hostile_mail import FAMILIES  # noqa: E402

TIMEOUT = 300.0
BASELINE = (b"From: a@customer.example\r\nTo: inbox@acme.mail.test\r\nSubject: hello\r\n"
            b"Date: Mon, 8 Jan 2024 10:00:00 +0000\r\nMessage-ID: <base@x>\r\n\r\n" + b"An ordinary line.\r\n" * 50)


@dataclass(frozen=True)
class Cost:
    cpu: float
    rss_mb: float
    ok: bool
    note: str = ""


def run(args: list[str], env: dict[str, str]) -> Cost:
    """CPU seconds and peak RSS of one child process (killed after TIMEOUT seconds)."""
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        started = time.monotonic()
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > TIMEOUT:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                return Cost(usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, False, f">{TIMEOUT:.0f} s")
            time.sleep(0.02)
        errors.seek(0)
        err = errors.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    note = "" if code == 0 else f"exit {code}: {err.strip().splitlines()[-1:]}"
    return Cost(usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code == 0, note)


def parse_cost(path: Path) -> Cost:
    return run([sys.executable, "-m", "postroom", "parse", "--json", str(path)], dict(os.environ))


_STAGE = ("import sys, time; from pathlib import Path; from postroom.parsing import parse; raw = Path(sys.argv[1])"
          ".read_bytes(); t = time.process_time(); parse(raw); print(time.process_time() - t)")


def stage_cpu(path: Path) -> float:
    """CPU seconds of the ``parse`` call alone, measured inside a child (no interpreter start or imports)."""
    done = subprocess.run([sys.executable, "-c", _STAGE, str(path)], capture_output=True, text=True, timeout=TIMEOUT)
    return float(done.stdout.strip() or "nan")


def pipeline_cost(path: Path) -> Cost:
    """Ingest and process one message into a fresh data folder (tenant creation not counted)."""
    with tempfile.TemporaryDirectory(prefix="hostile-") as data:
        env = {**os.environ, "POSTROOM_DATA_DIR": data, "POSTROOM_DATABASE_URL": "", "POSTROOM_BROKER_URL": ""}
        for _ in range(5):  # the shared working tree may be mid-edit: retry a failed import
            if subprocess.run([sys.executable, "-m", "postroom", "tenant", "add", "acme", "--exist-ok"], env=env,
                              capture_output=True).returncode == 0:
                break
            time.sleep(5)
        cost = run([sys.executable, "-m", "postroom", "ingest", "--tenant", "acme", "--json", str(path)], env)
        return cost


def size_of(text: str) -> int:
    units = {"K": 1024, "M": 1024 * 1024}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def label(size: int) -> str:
    return f"{size // (1024 * 1024)} MB" if size >= 1024 * 1024 else f"{size // 1024} KB"


def growth(prev: tuple[int, float] | None, size: int, net: float) -> str:
    if prev is None or prev[1] <= 0.005 or net <= 0:
        return "-"
    return f"{(net / prev[1]) ** (1 / math.log2(size / prev[0])):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64K,256K,1M,4M")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--no-pipeline", action="store_true")
    parser.add_argument("--write", action="store_true", help="replace the hostile section of bench/RESULTS.md")
    opts = parser.parse_args()
    sizes = [size_of(s) for s in opts.sizes.split(",")]
    families = opts.families.split(",")
    with tempfile.TemporaryDirectory(prefix="hostile-mail-") as tmp:
        base_file = Path(tmp) / "baseline.eml"
        base_file.write_bytes(BASELINE)
        base_parse = min(parse_cost(base_file).cpu for _ in range(3))
        base_pipe = 0.0 if opts.no_pipeline else min(pipeline_cost(base_file).cpu for _ in range(3))
        print(f"baseline (1 KB mail): parse {base_parse:.2f} s CPU, pipeline {base_pipe:.2f} s CPU", flush=True)
        header = ("| family | size | parse() CPU s | growth/doubling | `postroom parse` CPU s | net | parse peak MB | "
                  "pipeline CPU s | net | growth/doubling | pipeline peak MB |")
        rows = [header, "|" + "---|" * 11]
        print(header, flush=True)
        for family in families:
            prev_stage: tuple[int, float] | None = None
            prev_pipe: tuple[int, float] | None = None
            for size in sizes:
                path = Path(tmp) / f"{family}-{size}.eml"
                path.write_bytes(FAMILIES[family](size))
                stage = stage_cpu(path)
                parsed = parse_cost(path)
                net_parse = max(0.0, parsed.cpu - base_parse)
                cells = [family, label(size), f"{stage:.3f}", growth(prev_stage, size, stage),
                         f"{parsed.cpu:.2f}{' ' + parsed.note if parsed.note else ''}", f"{net_parse:.2f}",
                         f"{parsed.rss_mb:.0f}"]
                prev_stage = (size, stage)
                if opts.no_pipeline:
                    cells += ["-", "-", "-", "-"]
                else:
                    piped = pipeline_cost(path)
                    net_pipe = max(0.0, piped.cpu - base_pipe)
                    cells += [f"{piped.cpu:.2f}{' ' + piped.note if piped.note else ''}", f"{net_pipe:.2f}",
                              growth(prev_pipe, size, net_pipe), f"{piped.rss_mb:.0f}"]
                    prev_pipe = (size, net_pipe)
                row = "| " + " | ".join(cells) + " |"
                rows.append(row)
                print(row, flush=True)
    if opts.write:
        write_results(rows, base_parse, base_pipe, " ".join(["python", "bench/hostile.py", *sys.argv[1:]]))


def write_results(rows: list[str], base_parse: float, base_pipe: float, command: str) -> None:
    """Replace (or add) the "## hostile" section of bench/RESULTS.md, leaving the other sections."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = "\n".join([
        "## hostile", "",
        f"{datetime.date.today().isoformat()}, `{command}` (2 shared cores; CPU = user + system of the child "
        "process, peak = its max RSS; net = minus the 1 KB baseline; parse() = the call alone, timed in a child; "
        "growth per doubling ~2.0 is linear).",
        f"Baseline: parse {base_parse:.2f} s, pipeline {base_pipe:.2f} s CPU.", "", *rows, "",
    ])
    start = text.find("## hostile")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1:] if end != -1 else "")
    path.write_text(text)


if __name__ == "__main__":
    main()
