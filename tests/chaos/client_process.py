"""A client process for tests/chaos/test_kill_client.py, killed by the test mid-call.

Usage: client_process.py TRANSPORT WORKER_BIN EXPORTS SLEEP_MS [SOCKET]

Starts a MoltClient (spawning its worker, or attaching to the worker listening on SOCKET over
shared memory), prints the worker's pid (None when attached), then "calling", then makes one
`sleep` call of SLEEP_MS that the test interrupts by killing this process.
"""

from __future__ import annotations

import sys

from molt_accel import MoltClient


def main() -> None:
    transport, worker_bin, exports, sleep_ms, *socket = sys.argv[1:]
    timeout_ms = int(sleep_ms) * 2
    if socket:
        client = MoltClient(socket=socket[0], transport=transport, strict_shm=True, timeout_ms=timeout_ms)
    else:
        client = MoltClient(
            worker_cmd=[worker_bin],
            exports=exports,
            transport=transport,
            strict_shm=transport == "shm",
            timeout_ms=timeout_ms,
        )
    client.start()
    print(client.worker_pid, flush=True)
    print("calling", flush=True)
    client.call("sleep", {"ms": int(sleep_ms)})


if __name__ == "__main__":
    main()
