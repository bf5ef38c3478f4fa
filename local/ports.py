"""Whether a listener already holds an address's port, asked before a stand-in is started on it.

Probed as the servers themselves bind (SO_REUSEADDR: HAProxy, and Python's HTTP servers): only a listener makes a
port taken. Without it, the connections a stopped server closed first stay in TIME_WAIT for a minute and the port
looks taken although the server would bind it (a box world's gateway address comes back to the next world made
after it: Docker hands out the freed subnet again).
"""
from __future__ import annotations

import socket


def listener_error(address: str, port: int) -> OSError | None:
    """The error binding `address:port` fails with when something listens there; None when a server could bind it."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            return error
    return None
