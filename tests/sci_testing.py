"""Pieces shared by the SCI test modules: fixture weights and sample indices, and the PyTorch view of a Keras
SCI's variables. Not a test module itself."""

from __future__ import annotations

import re

import keras
import numpy as np

from sci_tf.convert import torch_modules
from tests.reference import reference_path
from train.torch_weights import read_state_dict

# Conv biases right before a train-mode BatchNorm: the batch mean cancels them, their exact gradient is 0 and
# both implementations return float noise there.
PRE_NORM_BIASES = ("enhance.conv.0.bias", "calibrate.in_conv.0.bias", "calibrate.convs.0.bias",
                   "calibrate.convs.3.bias")


def fixture_state(name: str) -> dict[str, np.ndarray]:
    """The `w/` state dict of the SCI fixture `name` (e.g. "pretrained_medium"), PyTorch names."""
    return read_state_dict(reference_path("sci", f"{name}.npz"))


def sample_indices(data: dict) -> list[int]:
    """The k of a pretrained fixture's `input_k` samples (public: 0 and 1), in order; fails when there are none."""
    indices = sorted(int(match[1]) for key in data if (match := re.fullmatch(r"input_(\d+)", key)))
    assert indices, "no input_k samples in the fixture"
    return indices


def torch_variables(model) -> dict:
    """PyTorch tensor name → (Keras variable, is conv kernel) of a built SCI / SCIEnhancer."""
    variables = {}
    for module, layer in torch_modules(model).items():
        if isinstance(layer, keras.layers.Conv2D):
            variables.update({f"{module}.weight": (layer.kernel, True), f"{module}.bias": (layer.bias, False)})
        else:
            for suffix, attribute in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                                      ("running_var", "moving_variance")):
                variables[f"{module}.{suffix}"] = (getattr(layer, attribute), False)
    return variables


def torch_order(variable, is_kernel: bool) -> np.ndarray:
    """A Keras variable's value in PyTorch layout (conv kernels HWIO → OIHW)."""
    value = np.asarray(variable)
    return value.transpose(3, 2, 0, 1) if is_kernel else value
