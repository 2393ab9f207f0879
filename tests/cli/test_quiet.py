"""The first commands after installing print nothing on stderr.

A fresh install is one where flanker's ply parser tables were never written
(or do not match the installed ply): the first import then generates them and
ply warns about every unreachable grammar symbol. The test gets that state
without touching the venv: a copy of flanker without its tables, first on
PYTHONPATH, with an empty HOME and cache directory.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

POSTROOM = str(Path(sys.executable).with_name("postroom"))


@pytest.fixture
def fresh_env(tmp_path: Path) -> dict[str, str]:
    spec = importlib.util.find_spec("flanker")
    assert spec is not None and spec.origin is not None
    packages = tmp_path / "site"
    shutil.copytree(Path(spec.origin).parent, packages / "flanker",
                    ignore=shutil.ignore_patterns("*parsetab.py", "__pycache__"))
    assert not list((packages / "flanker").rglob("*parsetab.py"))
    (tmp_path / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
    env.update(PYTHONPATH=str(packages), HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "home/.cache"),
               PYTHONDONTWRITEBYTECODE="1", POSTROOM_DATA_DIR=str(tmp_path / "data"))
    return env


def test_fresh_install_commands_print_nothing_on_stderr(fresh_env: dict[str, str], tmp_path: Path) -> None:
    for args in (["--help"], ["init"]):
        done = subprocess.run([POSTROOM, *args], capture_output=True, text=True, timeout=60, env=fresh_env,
                              cwd=tmp_path)
        assert done.returncode == 0 and done.stderr == "", (args, done.stderr[:2000])
        assert done.stdout
    assert list((tmp_path / "site/flanker").rglob("*parsetab.py")), "ply did not have to build its tables"
