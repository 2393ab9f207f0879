"""A real IMAP server (Debian's Dovecot) started per test in a temp folder, on a random 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import getpass
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.testing import free_port, wait_until

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
USER, PASSWORD = "alice", "s3cret-imap"

CONFIG = """protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
mail_location = maildir:{root}/mail/%u
first_valid_uid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


class Dovecot:
    """Start, stop and talk to the server the way a mail provider's users would (APPEND, flags, folders)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="postroom-dovecot-"))
        self.root.chmod(0o755)  # its unprivileged processes must reach their sockets and the mail
        self.port = free_port()
        if os.geteuid() == 0:  # Dovecot runs logins and mail as unprivileged users of its package
            login, mail = "dovenull", "dovecot"
            internal = internal_group = "root"
        else:
            login = mail = internal = getpass.getuser()
            internal_group = pwd.getpwnam(internal).pw_gid
        entry = pwd.getpwnam(mail)
        (self.root / "mail").mkdir()
        os.chown(self.root / "mail", entry.pw_uid, entry.pw_gid)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:::\n")
        (self.root / "dovecot.conf").write_text(CONFIG.format(
            root=self.root, port=self.port, login=login, internal=internal, internal_group=internal_group,
            mail_user=entry.pw_uid, mail_group=entry.pw_gid))
        self.process: subprocess.Popen | None = None

    def url(self, folder: str = "INBOX") -> str:
        return f"imap://{USER}@127.0.0.1:{self.port}/{folder}"

    def start(self) -> Dovecot:
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._listening, timeout=20)
        return self

    def _listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            return sock.recv(64).startswith(b"* OK")
        return False

    def stop(self) -> None:
        """Drop the connections, then stop the server (its imap processes outlive the master otherwise)."""
        if self.process is not None:
            self.kick(check=False)
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def kick(self, check: bool = True) -> None:
        """Drop every connection of the user, as a provider's maintenance would (exit 68: nobody to kick)."""
        subprocess.run(["doveadm", "-c", str(self.root / "dovecot.conf"), "kick", USER], check=check,
                       capture_output=True)

    @contextlib.contextmanager
    def client(self, folder: str = "INBOX") -> Iterator[imaplib.IMAP4]:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        imap.login(USER, PASSWORD)
        imap.select(f'"{folder}"')
        try:
            yield imap
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                imap.logout()

    def append(self, raws: list[bytes], folder: str = "INBOX") -> None:
        with self.client(folder) as imap:
            for raw in raws:
                assert imap.append(f'"{folder}"', None, None, raw)[0] == "OK"

    def flags(self, folder: str = "INBOX") -> dict[bytes, str]:
        """Message-ID header -> flags of every message in the folder."""
        with self.client(folder) as imap:
            _, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        found = {}
        for part in data:
            if isinstance(part, tuple):
                found[part[1].split(b":", 1)[1].strip()] = part[0].decode()
        return found

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    if DOVECOT is None:
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd; .ci/run installs it)")
    server = Dovecot().start()
    yield server
    server.close()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "imap-password"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture
def settings(settings):  # noqa: F811 - the suite's settings, with IMAP waits short enough for tests
    return settings.replace(imap_poll_seconds=1, imap_idle_seconds=5, imap_lease_seconds=3,
                            imap_max_backoff_seconds=1, ses_inbound_wait_seconds=1)


@pytest.fixture
def run(settings):
    """The real ``postroom`` command on the test's database and data folder."""
    env = {**os.environ, "POSTROOM_DATA_DIR": str(settings.data_dir), "POSTROOM_MAIL_DOMAIN": settings.mail_domain,
           "POSTROOM_DATABASE_URL": settings.database_url, "POSTROOM_BROKER_URL": "",
           "POSTROOM_BLOB_URL": settings.blob_url, "POSTROOM_IMAP_LEASE_SECONDS": "2",
           "POSTROOM_IMAP_MAX_BACKOFF_SECONDS": "1"}

    def postroom(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "postroom", *args], env=env, capture_output=True, text=True,
                              timeout=60, **kwargs)

    postroom.env = env  # type: ignore[attr-defined]
    return postroom
