from django.urls import path

from . import table_views, views

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
    path("sync/table/summary", table_views.summary),
    path("async/table/summary", table_views.summary_async),
    path("sync/table/summary_rendered", table_views.summary_rendered),
    path("sync/table/summary_without_params", table_views.summary_without_params),
    path("sync/table/summary_of_a_dict", table_views.summary_of_a_dict),
    path("sync/table/summary_missing_a_column", table_views.summary_missing_a_column),
    path("sync/table/transform", table_views.transform),
    path("async/table/transform", table_views.transform_async),
    path("async/table/transform_rendered", table_views.transform_rendered_async),
    path("sync/table/transform_read_as_a_value", table_views.transform_read_as_a_value),
    path("sync/echo_rendered", table_views.echo_rendered),
]
