"""Per-tenant rule sets from ``<rules_dir>/<tenant-slug>.yaml``, reloaded when the file changes.

A file is re-read when its mtime, size or inode changes (checked with one
``stat`` per access, no watcher thread). A file that fails validation is
refused: the error is logged once and the last good version stays in force,
so a typo by an admin never turns routing off.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from postroom.errors import ConfigError
from postroom.rules.compile import read_ruleset
from postroom.rules.errors import RulesError
from postroom.rules.model import Ruleset

log = logging.getLogger(__name__)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_Stamp = tuple[int, int, int]


@dataclass
class _Entry:
    lock: threading.Lock
    ruleset: Ruleset
    stamp: _Stamp | None = None
    errors: tuple[str, ...] = ()


class RuleBook:
    """Thread-safe cache of every tenant's rules, keyed by tenant slug."""

    def __init__(self, rules_dir: str | os.PathLike[str]) -> None:
        self.rules_dir = Path(rules_dir)
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def path_for(self, slug: str) -> Path:
        if not _SLUG.match(slug):
            raise ConfigError(f"invalid tenant slug {slug!r}")
        return self.rules_dir / f"{slug}.yaml"

    def for_tenant(self, slug: str) -> Ruleset:
        """Current rules of a tenant; no file means no rules."""
        path = self.path_for(slug)
        entry = self._entry(slug, path)
        stamp = _stamp(path)
        if stamp == entry.stamp:
            return entry.ruleset
        with entry.lock:
            if stamp != entry.stamp:
                self._reload(slug, path, entry, stamp)
            return entry.ruleset

    def peek(self, slug: str) -> Ruleset | None:
        """The loaded rules if the file is unchanged (one ``stat``), else None: for callers that must not block
        on reading and validating a file (the gateway's event loop), who then call ``for_tenant`` off-loop."""
        entry = self._entries.get(slug)
        if entry is None or _stamp(self.path_for(slug)) != entry.stamp:
            return None
        return entry.ruleset

    def errors(self, slug: str) -> tuple[str, ...]:
        """Problems with the tenant's file on disk, empty when the loaded version is current."""
        self.for_tenant(slug)
        entry = self._entries.get(slug)
        return entry.errors if entry else ()

    def _entry(self, slug: str, path: Path) -> _Entry:
        entry = self._entries.get(slug)
        if entry is None:
            with self._lock:
                entry = self._entries.setdefault(slug, _Entry(threading.Lock(), Ruleset(str(path))))
        return entry

    def _reload(self, slug: str, path: Path, entry: _Entry, stamp: _Stamp | None) -> None:
        """Swap in the file's rules; the stamp is set last so lock-free readers never skip a reload."""
        if stamp is None:
            if entry.ruleset.rules:
                log.info("rules for tenant %s: %s removed, no rules in force", slug, path)
            entry.ruleset, entry.errors = Ruleset(str(path)), ()
        else:
            try:
                entry.ruleset, entry.errors = read_ruleset(path), ()
                log.info("rules for tenant %s loaded from %s: %d rules", slug, path, len(entry.ruleset))
            except RulesError as exc:
                entry.errors = tuple(exc.lines)
                log.error("rules for tenant %s refused, keeping the last good version (%d rules):\n%s",
                          slug, len(entry.ruleset), exc)
        entry.stamp = stamp


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
