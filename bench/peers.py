"""postroom against real peers: Postfix (durable queue, discards), the aiosmtpd no-op sink, postroom.

    apt-get update && apt-get install -y postfix     # Debian: Postfix and its load tool smtp-source
    .venv/bin/python bench/peers.py [--messages 5000] [--sessions 20] [--runs 3] [--sizes 4096,65536]
                                    [--lone-messages 1000] [--modes "per session,per connection,one session"]
                                    [--smtp-processes 1] [--baseline-env POSTROOM_X=1,...]

This script installs nothing. It needs root (Postfix's master drops privileges
to the ``postfix`` user), configures a private Postfix instance in a temp
directory (own queue, only a loopback port, every message queued durably and
then handed to the ``discard`` transport) and runs the same ``smtp-source``
load against Postfix, the aiosmtpd sink and postroom, three ways: several
messages per session (``-d``, like bench/ingest.py), one message per
connection (no ``-d``: connect, banner, EHLO, MAIL, RCPT, DATA, QUIT each
time, which is how most mail arrives) and one lone session sending one
message after the other (``-d -s 1``: the wait from end of DATA to 250).
postroom is ``postroom serve --no-workers`` on the embedded default with
``--smtp-processes`` gateway processes. Each load and server is run
``--runs`` times, interleaved; the summary shows the medians.
``--baseline-env`` adds "baseline", postroom with those settings, to the same
rounds (an interleaved A/B, e.g. POSTROOM_INLINE_BLOB_MAX=0). For the aiosmtpd
and postroom servers it also prints the CPU time (user + system, whole process
tree) they spent per message: on a shared machine a steadier figure than msgs/s.

On a 2-core machine, where smtp-source needs CPU too, one postroom SMTP
process was the best setting (figures in bench/RESULTS.md, "postroom SMTP
processes"): more processes split the sessions, so each group commit covers
fewer messages, and the processes queue for SQLite's one write lock. More
cores, or a database that takes concurrent writers, may change that.
"""

from __future__ import annotations

import os
import sys

# Run as a file, sys.path[0] is bench/, where bench/threading.py would shadow the stdlib: use the repo root.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.servers import cpu_seconds, free_port, postroom, server_pids, sink, wait_for_smtp  # noqa: E402

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
meta_directory = {dir}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = peers.bench.invalid
mydestination =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
default_transport = discard
local_transport = discard
relay_transport = discard
virtual_transport = discard
message_size_limit = 104857600
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 200
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
"""
SERVICES = """\
{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


@contextmanager
def postfix() -> Iterator[int]:
    """A private Postfix on a loopback port that queues durably and then discards."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="postroom-peers-postfix-") as tmp:
        os.chmod(tmp, 0o755)
        Path(tmp, "main.cf").write_text(MAIN_CF.format(dir=tmp))
        Path(tmp, "master.cf").write_text(SERVICES.format(port=f"127.0.0.1:{port}"))
        Path(tmp, "queue").mkdir()
        Path(tmp, "data").mkdir()
        shutil.chown(Path(tmp, "data"), "postfix")
        for name in ("postfix-files", "dynamicmaps.cf"):
            if Path("/etc/postfix", name).exists():
                shutil.copy(Path("/etc/postfix", name), Path(tmp, name))
        subprocess.run(["postfix", "-c", tmp, "start"], check=True, capture_output=True)
        try:
            wait_for_smtp(port)
            yield port
        finally:
            subprocess.run(["postfix", "-c", tmp, "stop"], capture_output=True)
            time.sleep(1)


def smtp_source(port: int, *, messages: int, sessions: int, size: int, reuse: bool = True) -> float:
    """Run smtp-source; return messages per second. ``reuse``: many messages per session (``-d``), else one each."""
    cmd = ["smtp-source", *(["-d"] if reuse else []), "-s", str(sessions), "-m", str(messages), "-l", str(size),
           "-f", "load@example.com", "-t", "inbox@acme.mail.test", f"127.0.0.1:{port}"]
    started = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, timeout=1800)
    return messages / (time.monotonic() - started)


MODES = {  # name: (many messages per session, sessions are --sessions or one)
    "per session": (True, False),
    "per connection": (False, False),
    "one session": (True, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="4096,65536")
    parser.add_argument("--lone-messages", type=int, default=1000, help="messages of the one-session run (4K)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"any of {', '.join(MODES)}")
    parser.add_argument("--smtp-processes", type=int, default=1)
    parser.add_argument("--baseline-env", default="", help="also run postroom with these KEY=VALUE settings")
    args = parser.parse_args()
    for tool in ("postfix", "smtp-source"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get update && apt-get install -y postfix")

    servers = {"postfix": postfix, "aiosmtpd sink": sink,
               "postroom": lambda: postroom(processes=args.smtp_processes)}
    baseline = dict(kv.split("=", 1) for kv in args.baseline_env.split(",") if kv)
    if baseline:
        servers["baseline"] = lambda: postroom(processes=args.smtp_processes, env=baseline)
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    loads = [(mode, size) for mode in modes for size in (sizes if mode != "one session" else [4096])]
    rates: dict[tuple[str, int, str], list[float]] = {}
    cpus: dict[tuple[str, int, str], list[float]] = {}
    print(f"smtp-source, {args.messages} msgs over {args.sessions} sessions (-d: per session; no -d: per "
          f"connection), one session: {args.lone_messages} msgs of 4K over 1 session (-d -s 1); {args.runs} runs "
          f"each, interleaved (median); postroom: embedded default, workers off, {args.smtp_processes} SMTP "
          f"process(es)" + (f"; baseline: postroom with {baseline}" if baseline else ""))
    for _ in range(args.runs):
        for mode, size in loads:
            reuse, lone = MODES[mode]
            messages, sessions = (args.lone_messages, 1) if lone else (args.messages, args.sessions)
            for name, start in servers.items():
                with start() as started:
                    port = started if isinstance(started, int) else started[0]
                    pids = server_pids(port) if name != "postfix" else set()
                    before = cpu_seconds(pids)
                    rate = smtp_source(port, messages=messages, sessions=sessions, size=size, reuse=reuse)
                    rates.setdefault((mode, size, name), []).append(rate)
                    cpu = ""
                    if pids:
                        cpus.setdefault((mode, size, name), []).append((cpu_seconds(pids) - before) / messages * 1e6)
                        cpu = f" {cpus[mode, size, name][-1]:6.0f} us CPU/msg"
                print(f"  {mode:<14} {size:>6} B {name:<14} {rate:8.0f} msgs/s{cpu}", flush=True)
    median = {key: statistics.median(values) for key, values in rates.items()}
    cpu_median = {key: statistics.median(values) for key, values in cpus.items()}
    for mode, size in loads:
        print(f"\n{mode}, {size // 1024}K: " + ", ".join(
            f"{name} {median[mode, size, name]:.0f} msgs/s"
            + (f" ({cpu_median[mode, size, name]:.0f} us CPU/msg)" if (mode, size, name) in cpu_median else "")
            for name in servers))

    def ratios(mode: str) -> str:
        return " ".join(f"{s // 1024}K {median[mode, s, 'postroom'] / median[mode, s, 'postfix']:.2f}" for s in sizes)

    print()
    if "per session" in modes:
        print(f"ratio postroom/postfix at {args.sessions} connections: {ratios('per session')}")
    if "per connection" in modes:
        print(f"ratio postroom/postfix, one connection per message: {ratios('per connection')}")
    if "one session" in modes:
        print("one session ms/msg: " + " ".join(f"{name} {1000 / median['one session', 4096, name]:.2f}"
                                                 for name in servers))


if __name__ == "__main__":
    main()
