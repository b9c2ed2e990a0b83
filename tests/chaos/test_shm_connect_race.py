"""A shared-memory connection made just as the worker is declared gone is closed, not hung on.

Regression test for docs/reliability.md bug 3: connecting closed such a connection while
holding the transport's state lock, which closing takes again (a plain Lock): the thread
deadlocked, and with it every caller of the client, past all deadlines. The chaos test hit it
when a kill landed between the handshake and the connection's registration (about one run in
eight); this test puts a transport's connections (its ``ShmLink``) in that state directly, so
the race is reproduced every time: the window is microseconds wide.
"""

from __future__ import annotations

import threading
import time

from molt_accel import ClientConfig
from molt_accel._transports._shm_connection import ShmLink, lib
from reliability_support import SocketWorker

HANG_BOUND_S = 5.0


def test_a_connection_made_as_the_worker_is_declared_gone_is_closed_without_deadlock(socket_worker: SocketWorker) -> None:
    link = ShmLink(ClientConfig(socket=str(socket_worker.socket), transport="shm"), late_reply=lambda *_: None)
    # What the reaper or a failed call records when the worker dies mid-connect.
    link.gone("the worker exited")
    outcome: list[object] = []
    connecting = threading.Thread(target=lambda: outcome.append(link.connect(time.monotonic() + HANG_BOUND_S)), daemon=True)
    connecting.start()
    connecting.join(HANG_BOUND_S)
    assert not connecting.is_alive(), "connecting deadlocked on the link's state lock"
    # The worker accepted the segment (the handshake completed): the link refused to keep it.
    assert outcome == [(lib.MOLT_SHM_CLOSED, None)]
    assert link.in_flight == 0
