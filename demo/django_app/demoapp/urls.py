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
    path("data/baseline", views.data_baseline),
    path("data/inproc", views.data_inproc),
    path("data/offload", views.data_offload),
    path("data/baseline/transform", views.data_baseline_transform),
    path("data/inproc/transform", views.data_inproc_transform),
    path("data/offload/transform", views.data_offload_transform),
    path("trivial", trivial.trivial),
    path("trivial_async", trivial.trivial_async),
]
