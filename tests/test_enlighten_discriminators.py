"""EnlightenGAN discriminators: parity with upstream `NoNormDiscriminator` (d_global_seed0, d_local_seed0),
parameter counts and output sizes."""

import numpy as np
import pytest

from enlighten_tf.convert import load_discriminator
from enlighten_tf.discriminators import GlobalDiscriminator, LocalDiscriminator, discriminator_plan
from tests.reference import reference, reference_path

RTOL = 1e-4


def _assert_close(actual, expected):
    """≤ RTOL relative to the output's scale (the fp16-grid weights give outputs of a few 1e-2)."""
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= RTOL * np.abs(expected).max()


def test_global_discriminator_matches_upstream():
    fixture = reference("enlightengan", "d_global_seed0")
    discriminator = load_discriminator(GlobalDiscriminator(), reference_path("enlightengan", "d_global_seed0.npz"))
    _assert_close(discriminator(fixture["input"]).numpy(), fixture["output"])
    _assert_close(discriminator(fixture["input_1"]).numpy(), fixture["output_1"])  # 2×48×80 → 5×6


def test_local_discriminator_matches_upstream():
    fixture = reference("enlightengan", "d_local_seed0")
    discriminator = load_discriminator(LocalDiscriminator(), reference_path("enlightengan", "d_local_seed0.npz"))
    _assert_close(discriminator(fixture["input"]).numpy(), fixture["output"])
    # With negative scores in the fixture, this parity also rules out an activation after the last conv (a
    # LeakyReLU would scale them by 0.2, a sigmoid every score).
    assert fixture["output"].min() < 0


def test_parameter_counts():
    assert GlobalDiscriminator().count_params() == 11_154_369
    assert LocalDiscriminator().count_params() == 6_959_553


@pytest.mark.parametrize("cls, size, expected", [(GlobalDiscriminator, 320, 13), (GlobalDiscriminator, 64, 5),
                                                 (LocalDiscriminator, 32, 5), (LocalDiscriminator, 33, 5)])
def test_output_sizes(cls, size, expected):
    # Narrow nets: the sizes depend only on the plan (kernel 4, padding 2, strides).
    discriminator = cls(filters=2)
    output = discriminator(np.zeros((1, size, size, 3), np.float32))
    assert output.shape == (1, expected, expected, 1) and output.dtype == "float32"


def test_plan_matches_upstream_layer_list():
    assert discriminator_plan(5) == [(64, 2), (128, 2), (256, 2), (512, 2), (512, 2), (512, 1), (1, 1)]
    assert discriminator_plan(4) == [(64, 2), (128, 2), (256, 2), (512, 2), (512, 1), (1, 1)]
