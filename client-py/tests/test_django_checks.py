"""The system checks of molt_accel.checks: each problem gets its id, a clean project none."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoapp.settings")
django.setup()

from django.apps import apps  # noqa: E402
from django.core.checks import CheckMessage  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.management.base import SystemCheckError  # noqa: E402
from django.test import override_settings  # noqa: E402

from djangoapp import settings as test_project  # noqa: E402
from molt_accel.checks import check_deploy, check_settings, offloaded_views  # noqa: E402
from molt_client_support import TEST_EXPORTS, WORKER_BIN  # noqa: E402

CLEAN_URLS = "djangoapp.urls_checked"


def ids(messages: list[CheckMessage]) -> list[str]:
    return [message.id or "" for message in messages]


def molt(**changes: object) -> dict[str, object]:
    return {**test_project.MOLT_ACCEL, **changes}


@pytest.fixture(autouse=True)
def clean_project() -> Iterator[None]:
    with override_settings(ROOT_URLCONF=CLEAN_URLS, MOLT_ACCEL=molt()):
        yield


def test_a_clean_project_passes() -> None:
    assert check_settings() == []


def test_the_app_runs_its_checks_in_manage_py_check() -> None:
    assert apps.get_app_config("molt_accel").name == "molt_accel"
    call_command("check", tag=["molt_accel"])
    with override_settings(ROOT_URLCONF="djangoapp.urls"), pytest.raises(SystemCheckError, match="molt_accel.E007"):
        call_command("check", tag=["molt_accel"])


def test_offloaded_views_are_found_behind_includes() -> None:
    found = {(view.route, view.offload.entry) for view in offloaded_views()}
    assert found == {("api/echo", "echo"), ("api/v2/spin", "spin")}


def test_settings_that_are_not_a_dict_are_e001() -> None:
    with override_settings(MOLT_ACCEL=["WORKER_CMD"]):
        assert ids(check_settings()) == ["molt_accel.E001"]


def test_a_misspelt_key_is_e002_with_the_key_it_meant() -> None:
    with override_settings(MOLT_ACCEL=molt(TIMEOUT=500)):
        [message] = check_settings()
    assert message.id == "molt_accel.E002"
    assert "'TIMEOUT'" in message.msg
    assert message.hint == "Did you mean 'TIMEOUT_MS'?"


@pytest.mark.parametrize(
    "changes",
    [{"TIMEOUT_MS": 0}, {"BUSY_STATUS": 500}, {"TRANSPORT": "stdio", "SOCKET": "/tmp/w.sock"}, {"WORKER_CMD": "w"}],
)
def test_a_bad_value_is_e003(changes: dict[str, object]) -> None:
    with override_settings(MOLT_ACCEL=molt(**changes)):
        assert ids(check_settings()) == ["molt_accel.E003"]


def test_a_missing_worker_binary_is_e004(tmp_path: Path) -> None:
    with override_settings(MOLT_ACCEL=molt(WORKER_CMD=[str(tmp_path / "molt_worker")])):
        [message] = check_settings()
    assert message.id == "molt_accel.E004"
    assert "does not exist" in message.msg


def test_a_worker_binary_that_is_not_executable_is_e004(tmp_path: Path) -> None:
    binary = tmp_path / "molt_worker"
    binary.write_bytes(WORKER_BIN.read_bytes())
    binary.chmod(0o644)
    with override_settings(MOLT_ACCEL=molt(WORKER_CMD=[str(binary)])):
        [message] = check_settings()
    assert message.id == "molt_accel.E004"
    assert "not executable" in message.msg


def test_a_worker_program_not_on_path_is_e004(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOLT_WORKER_BIN", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with override_settings(MOLT_ACCEL={k: v for k, v in molt().items() if k != "WORKER_CMD"}):
        [message] = check_settings()
    assert message.id == "molt_accel.E004"
    assert "'molt_worker' is not on PATH" in message.msg


def test_an_unreadable_manifest_is_e005(tmp_path: Path) -> None:
    with override_settings(MOLT_ACCEL=molt(EXPORTS=str(tmp_path / "missing.json"))):
        assert ids(check_settings()) == ["molt_accel.E005"]


def test_a_manifest_that_is_not_json_is_e005(tmp_path: Path) -> None:
    manifest = tmp_path / "exports.json"
    manifest.write_text("{entries: ")
    with override_settings(MOLT_ACCEL=molt(EXPORTS=str(manifest))):
        assert ids(check_settings()) == ["molt_accel.E005"]


def test_a_manifest_the_worker_refuses_is_e006_with_its_reason(tmp_path: Path) -> None:
    manifest = tmp_path / "exports.json"
    manifest.write_text('{"entries": {"echo": {}, "no_such_entry": {}}}')
    with override_settings(MOLT_ACCEL=molt(EXPORTS=str(manifest))):
        [message] = check_settings()
    assert message.id == "molt_accel.E006"
    assert "no_such_entry" in message.msg


def test_an_entry_missing_from_the_manifest_is_e007_per_view(tmp_path: Path) -> None:
    manifest = tmp_path / "exports.json"
    manifest.write_text('{"entries": {"echo": {}}}')
    with override_settings(MOLT_ACCEL=molt(EXPORTS=str(manifest))):
        [message] = check_settings()
    assert message.id == "molt_accel.E007"
    assert "'spin'" in message.msg and "api/v2/spin" in message.msg
    assert message.hint == "The manifest enables echo."


def test_an_entry_the_worker_does_not_have_is_e007_with_the_nearest_name() -> None:
    with override_settings(ROOT_URLCONF="djangoapp.urls"):  # routes sync/nope and async/nope
        messages = check_settings()
    assert ids(messages) == ["molt_accel.E007", "molt_accel.E007"]
    assert {message.obj for message in messages} == {"djangoapp.views.unknown", "djangoapp.views.unknown_async"}


def test_a_misspelt_entry_gets_a_did_you_mean() -> None:
    with override_settings(ROOT_URLCONF="djangoapp.urls_typo"):
        [message] = check_settings()
    assert message.id == "molt_accel.E007"
    assert message.obj == "djangoapp.urls_typo.echo_typo"
    assert message.hint is not None and message.hint.startswith("Did you mean 'echo'?")


def test_the_embedded_manifest_is_used_without_exports() -> None:
    # molt_worker_test embeds the test manifest (demo/worker_app), which enables echo and spin.
    with override_settings(MOLT_ACCEL={k: v for k, v in molt().items() if k != "EXPORTS"}):
        assert check_settings() == []


def test_an_attached_client_without_the_worker_here_is_w001(tmp_path: Path) -> None:
    attached = molt(WORKER_CMD=[str(tmp_path / "elsewhere")], TRANSPORT="shm", SOCKET=str(tmp_path / "w.sock"))
    with override_settings(MOLT_ACCEL=attached):
        assert ids(check_settings()) == ["molt_accel.W001"]


def test_an_attached_client_with_the_worker_here_is_checked(tmp_path: Path) -> None:
    manifest = tmp_path / "exports.json"
    manifest.write_text('{"entries": {"echo": {}}}')
    attached = molt(TRANSPORT="shm", SOCKET=str(tmp_path / "w.sock"), EXPORTS=str(manifest))
    with override_settings(MOLT_ACCEL=attached):
        assert ids(check_settings()) == ["molt_accel.E007"]


def test_deploy_wants_an_explicit_timeout() -> None:
    with override_settings(MOLT_ACCEL={k: v for k, v in molt().items() if k != "TIMEOUT_MS"}):
        assert ids(check_deploy()) == ["molt_accel.W002"]


def test_deploy_wants_strict_shm() -> None:
    with override_settings(MOLT_ACCEL=molt(TRANSPORT="shm")):
        assert ids(check_deploy()) == ["molt_accel.W003"]
    with override_settings(MOLT_ACCEL=molt(TRANSPORT="shm", STRICT_SHM=True)):
        assert check_deploy() == []


def test_deploy_wants_a_private_socket_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    run.chmod(0o755)
    attached = molt(TRANSPORT="shm", STRICT_SHM=True, SOCKET=str(run / "w.sock"))
    with override_settings(MOLT_ACCEL=attached):
        assert ids(check_deploy()) == ["molt_accel.W004"]
        run.chmod(0o700)
        assert check_deploy() == []


def test_deploy_wants_a_metrics_directory_that_exists_and_is_private(tmp_path: Path) -> None:
    with override_settings(MOLT_ACCEL=molt(METRICS_PATH=str(tmp_path / "missing" / "m.jsonl"))):
        assert ids(check_deploy()) == ["molt_accel.W005"]
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with override_settings(MOLT_ACCEL=molt(METRICS_DIR=str(shared))):
        assert ids(check_deploy()) == ["molt_accel.W005"]
    shared.chmod(0o777 | stat.S_ISVTX)  # like /tmp: others cannot replace this user's files
    with override_settings(MOLT_ACCEL=molt(METRICS_DIR=str(shared))):
        assert check_deploy() == []
