"""local/ports.py: a port is taken only by a listener, not by the closed connections a stopped server left behind."""
from __future__ import annotations

import errno
import socket

from local.ports import listener_error


def test_a_listener_makes_the_port_taken():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        error = listener_error("127.0.0.1", holder.getsockname()[1])
    assert error is not None and error.errno == errno.EADDRINUSE


def test_a_stopped_servers_connections_in_time_wait_leave_the_port_free():
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server closes first: its side of the connection ends in TIME_WAIT
        client.recv(1)
        client.close()
    # What the probe used to do (a plain bind) is refused: the TIME_WAIT connection is there.
    with socket.socket() as plain:
        try:
            plain.bind(("127.0.0.1", port))
            refused = None
        except OSError as error:
            refused = error
    assert refused is not None and refused.errno == errno.EADDRINUSE
    assert listener_error("127.0.0.1", port) is None
