"""The demo app's configuration."""

from django.apps import AppConfig


class DemoAppConfig(AppConfig):
    name = "demoapp"

    def ready(self) -> None:
        # Without a database (no MOLT_PG_DSN) the receivers django.db connects to every
        # request (reset_queries, close_old_connections) have nothing to do. Under ASGI each
        # synchronous receiver costs two thread hops per request, which would be charged to
        # /offload_async alone. With a database they stay: they close broken connections.
        from django.conf import settings

        if settings.DATABASES:
            return
        from django.core.signals import request_finished, request_started
        from django.db import close_old_connections, reset_queries

        request_started.disconnect(reset_queries)
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
