"""The demo as a deployment runs it: every Django process attached to one shared worker
(molt_accel.testing's ``molt_attached``: the real worker started once per session from the
settings, as ``manage.py molt_worker`` starts it), checked by ``manage.py check`` and reported
by ``manage.py molt_status``."""

from __future__ import annotations

import io
import json
import random

from django.core.management import call_command
from django.test import Client

from cases import list_items_params, query_string
from molt_accel.testing import WorkerProcess


def test_offload_through_the_shared_worker_equals_the_baseline(molt_attached: WorkerProcess) -> None:
    rng = random.Random(16)
    client = Client()
    for _ in range(20):
        query = query_string(list_items_params(rng))
        baseline = client.get("/baseline", QUERY_STRING=query)
        offload = client.get("/offload", QUERY_STRING=query)
        assert (offload.status_code, offload.content) == (baseline.status_code, baseline.content)


def test_the_demo_passes_its_system_checks(molt_attached: WorkerProcess) -> None:
    call_command("check", tag=["molt_accel"])


def test_molt_status_counts_the_calls_of_the_shared_worker(molt_attached: WorkerProcess) -> None:
    def list_items_ok() -> int:
        out = io.StringIO()
        call_command("molt_status", "--json", stdout=out)
        report = json.loads(out.getvalue())
        assert report["shm"]["ok"] is True and report["shm"]["socket"] == molt_attached.socket
        return int(report["shm"]["replies"].get("list_items", {}).get("Ok", 0))

    before = list_items_ok()
    assert Client().get("/offload", {"user_id": "1"}).status_code == 200
    assert list_items_ok() == before + 1
