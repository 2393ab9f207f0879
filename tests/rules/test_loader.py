"""Per-tenant loading: pick up changes without restart, keep the last good set on errors."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from postroom.errors import ConfigError
from postroom.rules import RuleInput, evaluate
from postroom.rules.loader import RuleBook

GOOD = "rules:\n  - name: one\n    then: { category: One }\n"
GOOD2 = "rules:\n  - name: two\n    then: { category: Two }\n  - name: three\n    then: { tags: [x] }\n"
BAD = "rules:\n  - name: broken\n    then: { categroy: Oops }\n"


def write(path: Path, text: str) -> None:
    """Write and move mtime forward, so coarse file-system clocks cannot hide the change."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_missing_file_means_no_rules(tmp_path: Path) -> None:
    assert len(RuleBook(tmp_path).for_tenant("acme")) == 0


def test_loads_and_caches(tmp_path: Path) -> None:
    write(tmp_path / "acme.yaml", GOOD)
    book = RuleBook(tmp_path)
    first = book.for_tenant("acme")
    assert [r.name for r in first.rules] == ["one"]
    assert book.for_tenant("acme") is first
    assert len(book.for_tenant("other")) == 0


def test_changed_file_is_picked_up(tmp_path: Path) -> None:
    write(tmp_path / "acme.yaml", GOOD)
    book = RuleBook(tmp_path)
    assert len(book.for_tenant("acme")) == 1
    write(tmp_path / "acme.yaml", GOOD2)
    assert [r.name for r in book.for_tenant("acme").rules] == ["two", "three"]
    assert evaluate(RuleInput(), book.for_tenant("acme")).category == "Two"


def test_invalid_file_keeps_last_good_version(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "acme.yaml"
    write(path, GOOD)
    book = RuleBook(tmp_path)
    good = book.for_tenant("acme")
    write(path, BAD)
    with caplog.at_level(logging.ERROR, logger="postroom.rules.loader"):
        assert book.for_tenant("acme") is good
        assert book.for_tenant("acme") is good
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, "a bad file is logged once, not on every message"
    assert f"{path}:3:13: unknown key 'categroy'" in refusals[0].getMessage()
    assert book.errors("acme")[0].startswith(f"{path}:3:13:")
    write(path, GOOD2)
    assert [r.name for r in book.for_tenant("acme").rules] == ["two", "three"]
    assert book.errors("acme") == ()


def test_invalid_first_version_means_no_rules(tmp_path: Path) -> None:
    write(tmp_path / "acme.yaml", "rules: [\n")
    book = RuleBook(tmp_path)
    assert len(book.for_tenant("acme")) == 0
    assert "YAML syntax error" in book.errors("acme")[0]


def test_removed_file_means_no_rules(tmp_path: Path) -> None:
    write(tmp_path / "acme.yaml", GOOD)
    book = RuleBook(tmp_path)
    assert len(book.for_tenant("acme")) == 1
    (tmp_path / "acme.yaml").unlink()
    assert len(book.for_tenant("acme")) == 0


def test_atomic_replace_is_picked_up_even_with_same_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    write(path, GOOD)
    book = RuleBook(tmp_path)
    book.for_tenant("acme")
    st = path.stat()
    tmp = tmp_path / "acme.yaml.tmp"
    tmp.write_text(GOOD.replace("One", "Uno"))
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    tmp.replace(path)
    assert evaluate(RuleInput(), book.for_tenant("acme")).category == "Uno"


def test_slugs_cannot_escape_the_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        RuleBook(tmp_path).for_tenant("../etc/passwd")


def test_concurrent_readers_during_reloads(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    write(path, GOOD)
    book = RuleBook(tmp_path)
    seen: set[str] = set()
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(300):
                seen.update(r.name for r in book.for_tenant("acme").rules)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for text in (GOOD2, BAD, GOOD, BAD, GOOD2):
        write(path, text)
    for t in threads:
        t.join()
    assert not failures
    assert seen <= {"one", "two", "three"}
    assert [r.name for r in book.for_tenant("acme").rules] == ["two", "three"]
