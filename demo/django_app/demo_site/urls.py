"""URL root: the demo app's endpoints sit at the top level (`/baseline`, `/offload`, ...)."""

from django.urls import include, path

urlpatterns = [path("", include("demoapp.urls"))]
