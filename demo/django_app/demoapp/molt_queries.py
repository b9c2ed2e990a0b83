"""The demo's querysets offloaded to the worker (`/db/offload`); `manage.py molt_queries`
exports their SQL into the manifests. The samples cover every shape of the page's SQL: with
and without the status filter and the cursor."""

from __future__ import annotations

import datetime

from molt_accel.querysets import offloaded_query

from . import items

_SAMPLE_AFTER = (datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc), 1)

items_page = offloaded_query(
    "items_page",
    samples=[
        {"user_id": 1, "status": status, "limit": 50, "after": after}
        for status in (None, "open")
        for after in (None, _SAMPLE_AFTER)
    ],
)(items.page_queryset)

items_counts = offloaded_query("items_counts", samples=[{"user_id": 1}])(items.counts_queryset)
