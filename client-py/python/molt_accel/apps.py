"""The Django app: ``INSTALLED_APPS = [..., "molt_accel"]`` registers the system checks of
:mod:`molt_accel.checks` and the management commands ``molt_worker``, ``molt_status`` and ``molt_queries``.
``@molt_offload`` itself works without it."""

from __future__ import annotations

from django.apps import AppConfig


class MoltAccelConfig(AppConfig):  # type: ignore[misc]  # Django ships no types
    name = "molt_accel"
    label = "molt_accel"
    verbose_name = "molt accelerator"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
