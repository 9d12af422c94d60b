"""PyTorch state dicts (`.pth`/`.pt`, or an `.npz` twin with the same tensor names) → Keras layers.

For converters of ported PyTorch models: `read_state_dict` reads a checkpoint into numpy arrays (torch is imported
only for `.pth` files); `assign_state_dict` validates every name and shape against `Conv2D` / `BatchNormalization`
layers keyed by their PyTorch module names, then assigns (conv weights OIHW → Keras HWIO). Every problem raises
`WeightsMismatchError` naming the file and tensor.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import keras
import numpy as np

from train.errors import NotAvailableError, WeightsMismatchError

DATA_PARALLEL_PREFIX = "module."
# Prefix of the PyTorch tensors inside this project's .npz fixtures (`w/conv1_1.weight`).
NPZ_PREFIXES = ("w/",)
# BatchNorm's batch counter: absent from old checkpoints (torch < 0.4) and unused by Keras' fixed momentum.
_IGNORED_SUFFIXES = (".num_batches_tracked",)


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch  # lazily: only .pth files need PyTorch
    except ModuleNotFoundError as err:
        raise NotAvailableError(f"{path}: reading PyTorch checkpoints needs torch (pip install torch), "
                                "or pass an .npz with the same tensor names") from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types (pickle, zip, RuntimeError) for a bad file
        raise WeightsMismatchError(f"{path}: not a readable PyTorch checkpoint ({err})") from err
    if not isinstance(state, Mapping):
        raise WeightsMismatchError(f"{path}: expected a state_dict (name → tensor), got {type(state).__name__}")
    return {name: value.detach().cpu().numpy() for name, value in state.items() if hasattr(value, "numpy")}


def read_state_dict(path: str | os.PathLike, npz_prefixes: tuple[str, ...] = NPZ_PREFIXES) -> dict[str, np.ndarray]:
    """PyTorch tensor name → numpy array from a `.pth`/`.pt`/`.weight` checkpoint or an `.npz`.

    A `module.` (DataParallel) prefix is stripped; `num_batches_tracked` entries are kept (and ignored by
    `assign_state_dict`). In an .npz, only the keys under the first of `npz_prefixes`
    present are taken (prefix removed); without any, all keys.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsMismatchError(f"{path}: no such weights file")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as err:
            raise WeightsMismatchError(f"{path}: not a readable .npz ({err})") from err
        for prefix in npz_prefixes:
            if any(key.startswith(prefix) for key in arrays):
                arrays = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
                break
    else:
        arrays = _read_torch(path)
    return {_strip(name, DATA_PARALLEL_PREFIX): value for name, value in arrays.items()}


def _torch_tensors_of(layer: keras.layers.Layer) -> dict[str, keras.Variable]:
    """PyTorch parameter suffix → Keras variable of a Conv2D or BatchNormalization layer."""
    if isinstance(layer, keras.layers.Conv2D):
        return {"weight": layer.kernel, "bias": layer.bias}
    if isinstance(layer, keras.layers.BatchNormalization):
        return {"weight": layer.gamma, "bias": layer.beta, "running_mean": layer.moving_mean,
                "running_var": layer.moving_variance}
    raise TypeError(f"no PyTorch mapping for layer {layer.name} ({type(layer).__name__})")


def assign_state_dict(layers: Mapping[str, keras.layers.Layer], state: Mapping[str, np.ndarray], *,
                      source: str, allow_unexpected: bool = False) -> None:
    """Copies `state` (PyTorch names) into built `layers` (PyTorch module name → Keras layer).

    Conv kernels are transposed OIHW → HWIO; every value is cast to the variable's dtype (float16 fixtures
    become float32). All names and shapes are checked before anything is assigned; a missing, unexpected
    (unless `allow_unexpected`) or wrongly shaped tensor raises `WeightsMismatchError` naming it and `source`.
    """
    targets = {f"{module}.{suffix}": variable for module, layer in layers.items()
               for suffix, variable in _torch_tensors_of(layer).items()}
    present = {name for name in state if not name.endswith(_IGNORED_SUFFIXES)}
    missing = sorted(set(targets) - present)
    if missing:
        raise WeightsMismatchError(f"{source}: missing tensor(s) {', '.join(missing[:5])}"
                                   + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    unexpected = sorted(present - set(targets))
    if unexpected and not allow_unexpected:
        raise WeightsMismatchError(f"{source}: unexpected tensor(s) {', '.join(unexpected[:5])}"
                                   + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""))
    values = {}
    for name, variable in targets.items():
        value = np.asarray(state[name])
        if value.ndim == 4:
            value = value.transpose(2, 3, 1, 0)  # OIHW → HWIO
        if tuple(value.shape) != tuple(variable.shape):
            raise WeightsMismatchError(f"{source}: tensor {name} has shape {tuple(np.shape(state[name]))}, "
                                       f"expected {_torch_shape(variable.shape)}")
        values[name] = value
    for name, variable in targets.items():
        variable.assign(values[name].astype(variable.dtype))


def _torch_shape(keras_shape) -> tuple:
    shape = tuple(keras_shape)
    return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape
