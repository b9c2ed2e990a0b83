"""A URLconf whose ``@molt_offload`` views all call entries the test manifest enables, behind
nested includes (the system checks walk the whole resolver)."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from . import views


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("not offloaded")


api = [
    path("echo", views.echo),
    path("v2/", include([path("spin", views.spin_async)])),
]

urlpatterns = [
    path("plain", plain),
    path("api/", include(api)),
]
