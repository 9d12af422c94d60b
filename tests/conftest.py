import os

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
