"""The demo's Django project: settings, URL root, WSGI and ASGI entry points."""
