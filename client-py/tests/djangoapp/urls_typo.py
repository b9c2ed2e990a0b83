"""A URLconf with one ``@molt_offload`` view whose entry name is misspelt."""

from typing import Any

from django.http import HttpRequest
from django.urls import path

from molt_accel.django import molt_offload


@molt_offload(entry="ecoh")
def echo_typo(request: HttpRequest) -> dict[str, Any]:
    return dict(request.GET.items())


urlpatterns = [path("echo", echo_typo)]
