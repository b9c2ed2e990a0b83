"""docs/deploy.md's systemd unit is a unit systemd accepts (``systemd-analyze verify``), with
its paths pointed at this machine's, and runs what the docs say: ``manage.py molt_worker``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from molt_client_support import REPO

DEPLOY_MD = REPO / "docs" / "deploy.md"
UNIT = re.compile(r"```ini\n# /etc/systemd/system/(?P<name>\S+\.service)\n(?P<body>.*?)```", re.S)

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def unit_from_docs(site: Path) -> Path:
    match = UNIT.search(DEPLOY_MD.read_text())
    assert match is not None, "docs/deploy.md has no systemd unit"
    body = match["body"].replace("/srv/mysite/venv/bin/python", sys.executable).replace("/srv/mysite", str(site))
    unit = site / match["name"]
    unit.write_text(body)
    return unit


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_unit_in_the_docs_verifies_cleanly(tmp_path: Path) -> None:
    unit = unit_from_docs(tmp_path)
    assert "manage.py molt_worker" in unit.read_text()
    done = verify(unit)
    assert (done.returncode, done.stderr) == (0, "")


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    unit = unit_from_docs(tmp_path)
    unit.write_text(unit.read_text().replace(sys.executable, str(tmp_path / "no-python")))
    assert verify(unit).returncode != 0
