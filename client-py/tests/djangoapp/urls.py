from django.urls import path

from . import views

urlpatterns = [
    path("sync/echo", views.echo),
    path("async/echo", views.echo_async),
    path("sync/echo_list", views.echo_list),
    path("async/echo_raw", views.echo_raw_async),
    path("async/validated", views.validated_async),
    path("sync/spin", views.spin),
    path("async/spin", views.spin_async),
    path("sync/sleep", views.sleep_short),
    path("async/sleep", views.sleep_short_async),
    path("sync/nope", views.unknown),
    path("async/nope", views.unknown_async),
    path("sync/panic", views.panic),
    path("async/panic", views.panic_async),
]
