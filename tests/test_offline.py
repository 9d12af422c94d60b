"""The suite runs offline (tests/conftest.py): name lookups and internet connections are refused before any
packet is sent."""

import socket

import pytest


@pytest.mark.parametrize("address, refused", [(("storage.googleapis.com", 443), "no lookup of"),
                                              (("142.250.74.0", 443), "no connection to"),
                                              (("127.0.0.1", 9), "no connection to")])
def test_internet_connections_are_refused(address, refused):
    with pytest.raises(OSError, match=f"tests run offline: {refused}"):
        socket.create_connection(address, timeout=1)


def test_local_sockets_still_work():
    left, right = socket.socketpair()  # AF_UNIX: what multiprocessing uses
    with left, right:
        left.sendall(b"ok")
        assert right.recv(2) == b"ok"
