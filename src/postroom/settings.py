"""Settings: an optional TOML file, overridden by POSTROOM_* environment variables.

A Settings object is built once at the edge (CLI, test) and passed in; no
module reads the environment on import.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from postroom.errors import ConfigError

ENV_PREFIX = "POSTROOM_"


@dataclass(frozen=True)
class Settings:
    """Every knob postroom reads; the names map to POSTROOM_<NAME> variables."""

    data_dir: Path = Path("postroom-data")
    database_url: str = ""
    blob_url: str = ""
    broker_url: str = ""
    broker_namespace: str = "postroom"
    mail_domain: str = "mail.localhost"
    smtp_listen: str = "127.0.0.1:2525"
    http_listen: str = "127.0.0.1:8025"
    http_max_body_bytes: int = 2 * 1024 * 1024  # request bodies, counted while they stream in (413 past it)
    http_max_upload_bytes: int = 32 * 1024 * 1024  # endpoints taking attachments or a whole .eml
    max_message_size: int = 25 * 1024 * 1024
    inline_blob_max: int = 128 * 1024
    max_recipients: int = 100
    max_connections_per_ip: int = 20
    smtp_timeout: int = 300
    smtp_data_timeout: int = 30 * 60
    smtp_processes: int = 1
    rate_ip_per_minute: int = 1200
    rate_ip_burst: int = 600
    rate_sender_per_minute: int = 300
    rate_sender_burst: int = 300
    trusted_authserv_ids: str = ""
    dkim_verify: int = 1
    processing_lease_seconds: int = 300
    max_attempts: int = 5  # claims of one inbound row before it is failed for good
    budget_cpu_seconds: float = 30.0  # CPU time one message may take in the pipeline (docs/pipeline.md)
    budget_memory_mb: int = 1024  # resident memory of a worker process running a message (worker processes only)
    tls_cert: str = ""
    tls_key: str = ""
    rules_dir: str = ""
    discard_retention_days: int = 30
    worker_threads: int = 4
    worker_processes: int = 2
    outbound_url: str = ""
    portal_webhook_url: str = ""
    portal_webhook_secret: str = field(default="", repr=False)
    outbound_lifetime_seconds: int = 5 * 24 * 3600
    outbound_backoff_ms: int = 60_000
    outbound_max_backoff_ms: int = 4_000_000
    outbound_lease_seconds: int = 600
    operator_token: str = field(default="", repr=False)
    imap_poll_seconds: int = 60  # between looks at a mailbox whose server lacks IDLE
    imap_idle_seconds: int = 600  # IDLE is re-issued after this (servers drop it after 30 min)
    imap_lease_seconds: int = 60  # a mailbox held by a dead process is fetched by another after this
    imap_max_backoff_seconds: int = 300  # longest wait between attempts on a failing mailbox
    ses_inbound_queue_url: str = ""  # SQS queue of SES receipt notifications (S3 action); empty = off
    ses_inbound_region: str = ""
    ses_inbound_endpoint_url: str = ""  # for S3/SQS-compatible endpoints and tests
    ses_inbound_wait_seconds: int = 20  # SQS long poll
    log_format: str = "text"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'postroom.db').resolve()}"

    @property
    def resolved_blob_url(self) -> str:
        return self.blob_url or f"file://{(self.data_dir / 'blobs').resolve()}"

    @property
    def resolved_rules_dir(self) -> Path:
        return Path(self.rules_dir) if self.rules_dir else self.data_dir / "rules"

    @property
    def trusted_authserv_id_list(self) -> tuple[str, ...]:
        """Comma-separated authserv-ids of upstream MTAs whose Authentication-Results we believe."""
        return tuple(a.strip().lower() for a in self.trusted_authserv_ids.split(",") if a.strip())

    @property
    def smtp_address(self) -> tuple[str, int]:
        return split_host_port(self.smtp_listen)

    @property
    def http_address(self) -> tuple[str, int]:
        return split_host_port(self.http_listen)

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for banners and logs (redis://:pw@h, postgresql://u:pw@h)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def split_host_port(value: str) -> tuple[str, int]:
    """'127.0.0.1:2525' -> ('127.0.0.1', 2525); '[::1]:25' -> ('::1', 25)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"listen address {value!r} is not host:port (e.g. 127.0.0.1:2525)")
    return host.strip("[]") or "0.0.0.0", int(port)


def _coerce(name: str, raw: object, kind: type) -> object:
    try:
        if kind is Path:
            return Path(str(raw))
        if kind is int:
            return int(str(raw))
        if kind is float:
            return float(str(raw))
        return str(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name}: {raw!r} is not a valid {kind.__name__}") from exc


def load_settings(config_file: str | os.PathLike[str] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Read the TOML file (if any), then let POSTROOM_* variables override it."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, object] = {}
    config_file = config_file or environ.get(f"{ENV_PREFIX}CONFIG")
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        values.update(data.get("postroom", data))
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for name in fields:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown setting(s) in {config_file}: {', '.join(unknown)}")
    types = {"data_dir": Path}
    coerced = {
        name: _coerce(name, raw, types.get(name, type(fields[name].default)))
        for name, raw in values.items()
    }
    return Settings(**coerced)
