import ipaddress
import os
import socket

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tests.reference import reference as _reference  # noqa: E402

# Two logical CPU devices, so distribution tests run a real MirroredStrategy(["/cpu:0", "/cpu:1"]) on one CPU.
# Must happen before TensorFlow initialises its devices; ordinary single-device code still runs on /cpu:0.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)


# Tests run offline: a name lookup (other than "localhost") and every IPv4/IPv6 connection, loopback included, fail
# at once with the host named, so an accidental download cannot happen. AF_UNIX sockets (multiprocessing) work.
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
_LOCAL_HOSTS = (None, "", "localhost", b"localhost")


def _is_address(host) -> bool:
    try:
        ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host)
    except ValueError:
        return False
    return True


def _offline_getaddrinfo(host, *args, **kwargs):
    if host not in _LOCAL_HOSTS and not _is_address(host):  # an address needs no lookup; connect refuses it
        raise OSError(f"tests run offline: no lookup of {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


def _refuse_internet(connect):
    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"tests run offline: no connection to {address}")
        return connect(self, address)

    return guarded


socket.socket.connect, socket.socket.connect_ex = _refuse_internet(_connect), _refuse_internet(_connect_ex)
socket.getaddrinfo = _offline_getaddrinfo


@pytest.fixture
def umask_027():
    """The process umask set to 0o027 for one test (outputs must follow the umask in force when they are written)."""
    previous = os.umask(0o027)
    yield 0o027
    os.umask(previous)


@pytest.fixture
def reference():
    """`reference(model, name)` → dict of the fixture's arrays (skips, or fails in CI, when absent)."""
    return _reference


# One strategy for the whole session: each MirroredStrategy numbers its collective ops from the same keys, so a
# second one over the same devices reuses instance keys with other shapes ("Shape mismatch in the collective
# instance 100") once an earlier test has run an all-reduce.
@pytest.fixture(scope="session")
def two_cpu_strategy():
    """A MirroredStrategy over the two logical CPUs (2 replicas)."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
