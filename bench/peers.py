"""postroom against real peers: Postfix (durable queue, discards), the aiosmtpd no-op sink, postroom.

    apt-get update && apt-get install -y postfix     # Debian: Postfix and its load tool smtp-source
    .venv/bin/python bench/peers.py [--messages 5000] [--sessions 20] [--runs 3] [--sizes 4096,65536]
                                    [--smtp-processes 1] [--baseline-env POSTROOM_X=1,...]

This script installs nothing. It needs root (Postfix's master drops privileges
to the ``postfix`` user), configures a private Postfix instance in a temp
directory (own queue, only a loopback port, every message queued durably and
then handed to the ``discard`` transport) and runs the same ``smtp-source``
load (``-d``: several messages per session, like bench/ingest.py) against
Postfix, the aiosmtpd sink and postroom (``postroom serve --no-workers`` on
the embedded default, ``--smtp-processes`` gateway processes). Each size and
server is run ``--runs`` times, interleaved; the table shows the medians.
``--baseline-env`` adds "baseline", postroom with those settings, to the same
rounds (an interleaved A/B, e.g. POSTROOM_INLINE_BLOB_MAX=0). For the aiosmtpd
and postroom servers it also prints the CPU time (user + system, whole process
tree) they spent per message: on a shared machine a steadier figure than msgs/s.

One postroom SMTP process is the best setting on this 2-core machine, where
smtp-source needs CPU too. Measured in turns (3 rounds, 3,000 messages, 20
sessions): 4K 1,300-2,240 msgs/s and 370-680 us CPU/msg with one process,
1,150-1,300 msgs/s and 690-760 us with two, 890-1,090 msgs/s and 840-990 us
with three; 64K about the same msgs/s with one or two (720-850) at 870-890 us
against 1,010-1,230 us. More processes split the sessions, so each group
commit covers fewer messages, and the processes queue for SQLite's one write
lock. More cores, or a database that takes concurrent writers, may change that.
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


def smtp_source(port: int, *, messages: int, sessions: int, size: int) -> float:
    """Run smtp-source; return messages per second."""
    cmd = ["smtp-source", "-d", "-s", str(sessions), "-m", str(messages), "-l", str(size),
           "-f", "load@example.com", "-t", "inbox@acme.mail.test", f"127.0.0.1:{port}"]
    started = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, timeout=1800)
    return messages / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="4096,65536")
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
    medians: dict[tuple[str, int], float] = {}
    cpu_medians: dict[tuple[str, int], float] = {}
    print(f"smtp-source -d, {args.messages} msgs, {args.sessions} sessions, {args.runs} runs each (median); "
          f"postroom: embedded default, workers off, {args.smtp_processes} SMTP process(es)"
          + (f"; baseline: postroom with {baseline}" if baseline else ""))
    for size in sizes:
        rates: dict[str, list[float]] = {name: [] for name in servers}
        cpus: dict[str, list[float]] = {name: [] for name in servers if name != "postfix"}
        for _ in range(args.runs):
            for name, start in servers.items():
                with start() as started:
                    port = started if isinstance(started, int) else started[0]
                    pids = server_pids(port) if name in cpus else set()
                    before = cpu_seconds(pids)
                    rates[name].append(smtp_source(port, messages=args.messages, sessions=args.sessions,
                                                   size=size))
                    if name in cpus:
                        cpus[name].append((cpu_seconds(pids) - before) / args.messages * 1e6)
                cpu = f" {cpus[name][-1]:6.0f} us CPU/msg" if name in cpus else ""
                print(f"  {size:>6} B {name:<14} {rates[name][-1]:8.0f} msgs/s{cpu}", flush=True)
        for name in servers:
            medians[name, size] = statistics.median(rates[name])
        for name, values in cpus.items():
            cpu_medians[name, size] = statistics.median(values)
    print(f"\n{'server':<14}" + "".join(f"{f'{s // 1024}K msgs/s':>14}" for s in sizes))
    for name in servers:
        print(f"{name:<14}" + "".join(f"{medians[name, s]:>14.0f}" for s in sizes))
    ratios = {s: medians["postroom", s] / medians["postfix", s] for s in sizes}
    print(f"{'postroom/sink':<14}" + "".join(f"{medians['postroom', s] / medians['aiosmtpd sink', s]:>14.2f}"
                                           for s in sizes))
    print(f"{'CPU us/msg':<14}" + "".join(f"{f'{s // 1024}K':>14}" for s in sizes))
    for name in (n for n in servers if n != "postfix"):
        print(f"{name:<14}" + "".join(f"{cpu_medians[name, s]:>14.0f}" for s in sizes))
    print(f"ratio postroom/postfix at {args.sessions} connections: "
          + " ".join(f"{s // 1024}K {ratios[s]:.2f}" for s in sizes))


if __name__ == "__main__":
    main()
