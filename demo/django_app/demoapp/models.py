"""The demo's one table: a user's items, the rows of a typical list endpoint (`/db/*`)."""

from django.db import models


class Item(models.Model):
    """An item of a user. The indexes are the ones a list page needs: a user's items newest
    first (with the id breaking ties, as the page's cursor does), the same within one status,
    and the per-status counts (an index-only scan of the second)."""

    class Status(models.TextChoices):
        OPEN = "open"
        CLOSED = "closed"
        ARCHIVED = "archived"

    id = models.BigAutoField(primary_key=True)
    user_id = models.IntegerField()
    category = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices)
    title = models.CharField(max_length=200)
    score = models.IntegerField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["user_id", "-created_at", "-id"], name="item_user_newest"),
            models.Index(fields=["user_id", "status", "-created_at", "-id"], name="item_user_status_newest"),
        ]
