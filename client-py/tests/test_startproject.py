"""From outside: a project fresh from ``django-admin startproject`` adds molt_accel the way the
README says, and ``manage.py check`` and a request reach the real worker binary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from molt_client_support import WORKER_BIN

SETTINGS_ADDITION = f"""
INSTALLED_APPS += ["molt_accel"]
MOLT_ACCEL = {{
    "WORKER_CMD": [{str(WORKER_BIN)!r}],
    "TIMEOUT_MS": 2000,
}}
"""

VIEWS = """
from molt_accel.django import molt_offload


@molt_offload(entry="{entry}")
def echo(request):
    return {{"q": request.GET.get("q", "")}}
"""

URLS_ADDITION = """
from mysite import offload_views

urlpatterns += [path("echo", offload_views.echo)]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("startproject")
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", str(root)], check=True, env=_env())
    with open(root / "mysite" / "settings.py", "a") as settings:
        settings.write(SETTINGS_ADDITION)
    with open(root / "mysite" / "urls.py", "a") as urls:
        urls.write(URLS_ADDITION)
    return root


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    env.pop("MOLT_WORKER_BIN", None)
    return env


def manage(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=project, env=_env(), capture_output=True, text=True, timeout=120
    )


def write_view(project: Path, entry: str) -> None:
    (project / "mysite" / "offload_views.py").write_text(VIEWS.format(entry=entry))


def test_check_passes_and_the_view_answers_through_the_worker(project: Path) -> None:
    write_view(project, "echo")
    checked = manage(project, "check")
    assert checked.returncode == 0, checked.stderr
    assert "System check identified no issues" in checked.stdout
    request = (
        "from django.test.utils import setup_test_environment; setup_test_environment(); "
        "from django.test import Client; r = Client().get('/echo?q=hi'); print(r.status_code, r.content.decode())"
    )
    answered = manage(project, "shell", "-c", request)
    assert answered.returncode == 0, answered.stderr
    status, body = answered.stdout.strip().splitlines()[-1].split(" ", 1)
    assert (status, json.loads(body)) == ("200", {"q": "hi"})


def test_check_fails_on_an_entry_the_worker_does_not_export(project: Path) -> None:
    write_view(project, "ecoh")
    checked = manage(project, "check")
    assert checked.returncode == 1
    assert "mysite.offload_views.echo: (molt_accel.E007)" in checked.stderr
    assert "HINT: Did you mean 'echo'?" in checked.stderr


def test_molt_worker_command_is_there(project: Path) -> None:
    write_view(project, "echo")
    shown = manage(project, "molt_worker", "--socket", "/run/mysite/molt.sock", "--print-command")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == [str(WORKER_BIN), "--socket", "/run/mysite/molt.sock"]
