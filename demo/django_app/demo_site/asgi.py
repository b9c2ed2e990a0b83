"""ASGI entry point, served by uvicorn for the async endpoint (`/offload_async`)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

application = get_asgi_application()
