#!/usr/bin/env python3
"""uvicorn with N worker processes whose connections have Nagle's algorithm off, on uvloop
and httptools, as production serves ASGI (named explicitly: uvicorn's "auto" would quietly fall
back to asyncio's loop and h11 if they were missing, and the async steps would measure those).

`uvicorn --workers N` binds its listener with `proto` 0; accepted sockets inherit it, and
asyncio only sets TCP_NODELAY on sockets that report IPPROTO_TCP. So with several workers every
keep-alive request after the first waits ~40 ms for the client's delayed ACK before its body
leaves (uvicorn issue #3149; measured here: 22 req/s at concurrency 1 for any endpoint). This
binds the listener with IPPROTO_TCP and hands it to uvicorn's own process supervisor, which is
what `uvicorn.run` does otherwise.

    python bench/scripts/asgi_serve.py demo_site.asgi:application --app-dir demo/django_app \
        --host 127.0.0.1 --port 8001 --workers 2
"""

from __future__ import annotations

import argparse
import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess


def tcp_listener(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket whose accepted connections asyncio will set
    TCP_NODELAY on."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.set_inheritable(True)
    return listener


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", help="ASGI application as module:attribute")
    parser.add_argument("--app-dir", default=".")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backlog", type=int, default=2048)
    args = parser.parse_args()

    sys.path.insert(0, args.app_dir)
    config = uvicorn.Config(
        args.app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        backlog=args.backlog,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    listener = tcp_listener(args.host, args.port)
    try:
        if args.workers > 1:
            Multiprocess(config, sockets=[listener]).run()
        else:
            config.load_app()
            uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
