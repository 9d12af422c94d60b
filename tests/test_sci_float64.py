"""Float64 evidence for the tolerance of the train_network_seed0 gradients (tests/test_sci_networks.py).

The randomly initialised 3-stage network divides by tiny train-mode BatchNorm standard deviations stage after
stage, so float32 rounding is amplified in the gradients. Here the same port runs in float64 (the float64
policy; the losses' float32 casts made float64), and both float32 results, this port's and upstream's (the
fixture), are compared to it: the port is about as close to it as upstream (closer on 16 of 18 tensors), and
upstream's own float32 error is what leaves no room for a tolerance below 1e-3 of each tensor's max against the
fixture.
"""

import numpy as np
import pytest
import tensorflow as tf

import losses_tf.sci
from sci_tf.convert import load_state_dict
from sci_tf.model import SCI
from tests.reference import reference
from tests.sci_testing import PRE_NORM_BIASES, fixture_state, torch_order, torch_variables
from train.fit import precision_policy


def _loss_and_gradients(model: SCI, images) -> tuple[float, dict[str, np.ndarray]]:
    with tf.GradientTape() as tape:
        loss = model.sci_loss(images, training=True)
    gradients = tape.gradient(loss, model.trainable_variables)
    names = {id(variable): (name, is_kernel) for name, (variable, is_kernel) in torch_variables(model).items()}
    return float(loss), {names[id(v)][0]: torch_order(g, names[id(v)][1]) for v, g in
                         zip(model.trainable_variables, gradients)}


@pytest.fixture(scope="module")
def runs():
    """(fixture, float32 port, float64 port): each (loss, {torch name: gradient})."""
    seed0 = reference("sci", "train_network_seed0")
    gradients = {key[len("grad/"):]: value for key, value in seed0.items() if key.startswith("grad/")}
    fixture = (float(seed0["loss"]), gradients)
    model32 = SCI()
    load_state_dict(model32, fixture_state("train_network_seed0"))
    port32 = _loss_and_gradients(model32, seed0["input"])
    with precision_policy("float64"):
        model64 = SCI()
        model64.build()
    load_state_dict(model64, fixture_state("train_network_seed0"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(losses_tf.sci, "to_float32", lambda *ts: tuple(tf.cast(t, tf.float64) for t in ts))
        port64 = _loss_and_gradients(model64, seed0["input"].astype(np.float64))
    return fixture, port32, port64


def _error(gradient: np.ndarray, exact: np.ndarray) -> float:
    return float(np.abs(gradient - exact).max() / np.abs(exact).max())


def test_the_float64_port_is_float64(runs):
    _, _, (loss64, gradients64) = runs
    assert all(g.dtype == np.float64 for g in gradients64.values()) and len(gradients64) == 22


def test_float32_gradients_are_as_close_to_float64_as_upstreams(runs):
    (loss_fixture, fixture), (loss32, port32), (loss64, port64) = runs
    assert loss64 == pytest.approx(loss_fixture, rel=1e-7) and loss32 == pytest.approx(loss64, rel=1e-6)
    errors = {name: (_error(port32[name], port64[name]), _error(fixture[name], port64[name]))
              for name in port64 if name not in PRE_NORM_BIASES}  # those are ~0: BatchNorm cancels them
    for name, (ours, upstream) in errors.items():
        print(f"{name:30s} float32 error: port {ours:.1e}, upstream {upstream:.1e}")
        assert ours <= 1.25 * upstream + 2e-5, name  # measured: ≤ 1.2× upstream's error, mostly well below it
        assert upstream <= 6e-4, name  # upstream's own rounding, what the 1e-3 tolerance is set against
    assert max(upstream for _, upstream in errors.values()) >= 3e-4  # so 1e-4 against the fixture cannot hold
    assert max(ours for ours, _ in errors.values()) <= 2.5e-4
