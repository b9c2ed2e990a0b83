"""The demo's routes. No trailing slashes: the load tools hit these paths as they are."""

from django.urls import path

from . import trivial, views

urlpatterns = [
    path("baseline", views.baseline),
    path("offload", views.offload),
    path("offload_async", views.offload_async),
    path("baseline/compute", views.baseline_compute),
    path("offload/compute", views.offload_compute),
    path("healthz", views.healthz),
    path("db/baseline", views.db_baseline),
    path("db/offload", views.db_offload),
    path("db/entry", views.db_entry),
    path("trivial", trivial.trivial),
    path("trivial_async", trivial.trivial_async),
]
