"""Benchmark the parsing stage against the bare standard library.

Usage: python bench/parse.py [DIR]

Parses every file of DIR (default: fixtures/emails plus generated mail) with
``postroom.parsing.parse`` and with ``email.message_from_bytes`` (policy default,
the usual baseline, and compat32, the policy the stage loads with) in the same
run, prints messages/s, MB/s and the ratios (per CPU second: the machine is
shared, so wall time measures the neighbours too), then the peak memory
(tracemalloc) of parsing one 20 MiB message with attachments. Run by hand.
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from postroom.parsing import ParseFailed, parse

ROOT = Path(__file__).resolve().parents[1]
REPEAT = 3


def generated(count: int = 200) -> list[bytes]:
    """Replies, forwards and HTML mail of a few KB, as a corpus filler."""
    out = []
    for i in range(count):
        body = "\n".join(f"Line {j} of reply {i}, with some ordinary words in it." for j in range(20))
        quote = "\n".join(f"> quoted line {j}" for j in range(40))
        out.append(
            (f"From: Customer {i} <c{i}@customer.example>\nTo: support@acme.mail.test\n"
             f"Subject: Re: Ticket {i}\nDate: Mon, 8 Jan 2024 10:00:00 +0000\nMessage-ID: <gen-{i}@x>\n"
             "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n\n"
             f"--b\nContent-Type: text/plain; charset=utf-8\n\n{body}\n\nOn Mon, 8 Jan 2024, Acme wrote:\n{quote}\n"
             f"--b\nContent-Type: text/html; charset=utf-8\n\n<div>{body.replace(chr(10), '<br>')}</div>"
             f'<div class="gmail_quote">{quote}</div>\n--b--\n').encode()
        )
    return out


def corpus(directory: Path | None) -> list[bytes]:
    if directory is not None:
        return [p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()]
    return [p.read_bytes() for p in sorted((ROOT / "fixtures" / "emails").glob("*.eml"))] + generated()


def run(fn: Callable[[bytes], object], mails: list[bytes]) -> float:
    """Best CPU time of REPEAT passes over the corpus."""
    best = float("inf")
    for _ in range(REPEAT):
        start = time.process_time()
        for raw in mails:
            with contextlib.suppress(ParseFailed):
                fn(raw)
        best = min(best, time.process_time() - start)
    return best


def stdlib(raw: bytes) -> object:
    return email.message_from_bytes(raw, policy=email.policy.default)


def stdlib_compat32(raw: bytes) -> object:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def big_message(size: int = 20 * 1024 * 1024) -> bytes:
    """A 20 MiB mail: a text body, an HTML body and three binary attachments."""
    chunk = os.urandom((size - 200_000) * 3 // 4)
    parts = [
        "--big\nContent-Type: text/plain; charset=utf-8\n\n" + "Hello, see attachments.\n" * 2000,
        "--big\nContent-Type: text/html; charset=utf-8\n\n" + "<p>Hello, see attachments.</p>\n" * 2000,
    ]
    for n in range(3):
        encoded = base64.encodebytes(chunk[n * len(chunk) // 3 : (n + 1) * len(chunk) // 3]).decode()
        parts.append(f"--big\nContent-Type: application/pdf\nContent-Disposition: attachment; "
                     f'filename="scan-{n}.pdf"\nContent-Transfer-Encoding: base64\n\n{encoded}')
    head = ("From: a@example.com\nTo: b@example.com\nSubject: big\nDate: Mon, 8 Jan 2024 10:00:00 +0000\n"
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=big\n\n")
    return (head + "\n".join(parts) + "\n--big--\n").encode()


def peak_memory(fn: Callable[[bytes], object], raw: bytes) -> tuple[float, float]:
    """(seconds, peak MiB allocated while parsing) for one message."""
    tracemalloc.start()
    start = time.perf_counter()
    fn(raw)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak / 2**20


def main() -> None:
    mails = corpus(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
    megabytes = sum(map(len, mails)) / 2**20
    print(f"corpus: {len(mails)} messages, {megabytes:.2f} MiB")
    ours, theirs, compat = run(parse, mails), run(stdlib, mails), run(stdlib_compat32, mails)
    for name, secs in (("postroom parse", ours), ("email stdlib", theirs), ("email compat32", compat)):
        print(f"{name:15} {len(mails) / secs:9.1f} msg/CPU-s {megabytes / secs:8.2f} MB/CPU-s "
              f"({1000 * secs / len(mails):.3f} ms/msg)")
    print(f"ratio: postroom takes {ours / theirs:.2f}x the time of the stdlib parse alone (policy default), "
          f"{ours / compat:.2f}x that of a compat32 parse")
    raw = big_message()
    print(f"20 MiB message ({len(raw) / 2**20:.1f} MiB on the wire, 3 attachments):")
    for name, fn in (("postroom parse", parse), ("email stdlib", stdlib)):
        secs, peak = peak_memory(fn, raw)
        print(f"  {name:15} {secs:6.2f} s  peak {peak:7.1f} MiB (tracemalloc)")


if __name__ == "__main__":
    main()
