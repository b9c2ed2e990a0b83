"""A shared-memory connection made just as the worker is declared gone is closed, not hung on.

Regression test for docs/reliability.md bug 3: `ShmTransport._connect` closed such a
connection while holding the transport's state lock, which closing takes again (a plain
Lock): the thread deadlocked, and with it every caller of the client, past all deadlines. The
chaos test hit it when a kill landed between the handshake and the connection's registration
(about one run in eight); this test puts the transport in that state directly, so the race
is reproduced every time. White-box on purpose: the window is microseconds wide.
"""

from __future__ import annotations

import threading
import time


from molt_accel import MoltClient
from reliability_support import SocketWorker

HANG_BOUND_S = 5.0


def test_a_connection_made_as_the_worker_is_declared_gone_is_closed_without_deadlock(socket_worker: SocketWorker) -> None:
    client = MoltClient(socket=str(socket_worker.socket), transport="shm", strict_shm=True)
    client.start()
    transport = client._transport
    assert transport is not None
    # What the reaper or a failed call records when the worker dies mid-connect.
    transport._exit_reason = "the worker exited"
    outcome: list[object] = []
    connecting = threading.Thread(
        target=lambda: outcome.append(transport._connect(time.monotonic() + HANG_BOUND_S)), daemon=True
    )
    connecting.start()
    connecting.join(HANG_BOUND_S)
    # A deadlocked transport would hang close() too: the client is left to the process's end.
    assert not connecting.is_alive(), "_connect deadlocked on the transport's state lock"
    client.close()
    status, conn = outcome[0]
    assert conn is None
