"""PyTorch state dicts (`.pth`/`.pt`, or an `.npz` twin with the same tensor names) → Keras layers.

For converters of ported PyTorch models: `read_state_dict` reads a checkpoint into numpy arrays, `assign_state_dict`
validates every name and shape against `Conv2D` / `BatchNormalization` layers keyed by their PyTorch module names,
then assigns (conv weights OIHW → Keras HWIO). Every problem raises `WeightsMismatchError` naming the file and tensor.

`.pth`/`.pt` files are read by `torch.load(weights_only=True)` when torch is installed, else by
`read_torch_checkpoint`, a torch-free reader of the two formats `torch.save` writes: the zip archive of torch ≥ 1.6
(`<name>/data.pkl` + one raw record per storage, `<name>/data/<key>`) and the legacy stream (pickled magic number,
protocol, system info, the object with storages as persistent ids, the sorted storage keys, then each storage as an
int64 element count and its raw bytes), as torch 2.x writes it with `_use_new_zipfile_serialization=False` and
as torch 0.3.1 wrote it (`_rebuild_tensor`, storage views in the persistent id). Its unpickler resolves only
tensor rebuilds, `collections.OrderedDict` and the typed storage classes; anything else (e.g. `os.system`) is
refused before it runs. Tensors come out as numpy arrays in native byte order; their device tag is ignored.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import keras
import numpy as np

from train.errors import WeightsMismatchError

DATA_PARALLEL_PREFIX = "module."
# Prefix of the PyTorch tensors inside this project's .npz fixtures (`w/conv1_1.weight`).
NPZ_PREFIXES = ("w/",)
# BatchNorm's batch counter: absent from old checkpoints (torch < 0.4) and unused by Keras' fixed momentum.
_IGNORED_SUFFIXES = (".num_batches_tracked",)


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    """Through torch when it is installed (weights_only: no arbitrary code), else `read_torch_checkpoint`."""
    try:
        import torch  # lazily, and optional: preferred when installed, else the built-in reader below
    except ModuleNotFoundError:
        return read_torch_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types (pickle, zip, RuntimeError) for a bad file
        raise WeightsMismatchError(f"{path}: not a readable PyTorch checkpoint ({err})") from err
    if not isinstance(state, Mapping):
        raise WeightsMismatchError(f"{path}: expected a state_dict (name → tensor), got {type(state).__name__}")
    return {name: value.detach().cpu().numpy() for name, value in state.items() if hasattr(value, "numpy")}


# === Torch-free reading of torch.save files ===

# torch's typed storage classes (as pickled by name) → numpy element type.
_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}
# Legacy stream header (torch/serialization.py).
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stand-in for `torch.FloatStorage` etc.: only names an element type (never called)."""

    dtype: np.dtype


class _Storage:
    """A storage of `numel` elements of `dtype`; `data` (1-D array) is filled in once its bytes are read (legacy
    files store them after the pickle). A view (legacy storage view) shares its root's data from `offset` on."""

    __slots__ = ("dtype", "numel", "data", "root", "offset")

    def __init__(self, dtype: np.dtype, numel: int, root: "_Storage | None" = None, offset: int = 0):
        self.dtype, self.numel, self.data, self.root, self.offset = dtype, numel, None, root, offset

    def elements(self) -> np.ndarray:
        if self.root is None:
            return self.data
        return self.root.elements()[self.offset:self.offset + self.numel]


class _Tensor:
    """What a tensor rebuild returns: a strided window on a storage, turned into an array after loading."""

    __slots__ = ("storage", "offset", "shape", "strides")

    def __init__(self, storage: Any, offset: Any, shape: Any, strides: Any):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor without a storage")
        self.storage, self.offset = storage, int(offset)
        self.shape, self.strides = tuple(int(s) for s in shape), tuple(int(s) for s in strides)

    def array(self) -> np.ndarray:
        elements = self.storage.elements()
        if len(self.shape) != len(self.strides) or min(self.shape + self.strides + (self.offset,), default=0) < 0:
            raise pickle.UnpicklingError(f"invalid tensor layout {self.shape} / {self.strides}")
        if 0 in self.shape:
            return np.zeros(self.shape, elements.dtype.newbyteorder("="))
        last = self.offset + sum((size - 1) * stride for size, stride in zip(self.shape, self.strides))
        if last >= len(elements):  # never read outside the storage
            raise pickle.UnpicklingError(f"tensor {self.shape} at offset {self.offset} overruns its storage")
        window = np.lib.stride_tricks.as_strided(elements[self.offset:], self.shape,
                                                 [stride * elements.itemsize for stride in self.strides])
        return np.array(window, dtype=elements.dtype.newbyteorder("="), order="C", copy=True)


def _rebuild_tensor(storage, offset, shape, strides, *_):
    """torch._utils._rebuild_tensor (torch 0.3.1) and _rebuild_tensor_v2 (+ requires_grad, hooks, metadata)."""
    return _Tensor(storage, offset, shape, strides)


def _rebuild_parameter(data, *_):
    """torch._utils._rebuild_parameter(data, requires_grad, hooks): an nn.Parameter saved by keep_vars=True."""
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Callable] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only `_ALLOWED_GLOBALS` and the storage classes; storages come from `load_storage(persistent id)`."""

    def __init__(self, file: io.BufferedIOBase, load_storage: Callable[[tuple], _Storage]):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(np.dtype(_STORAGE_DTYPES[name]))
        raise _RefusedGlobal(f"refused to load {module}.{name} (only tensors and OrderedDict are read)")

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) < 5 or _text(pid[0]) != "storage" \
                or not isinstance(pid[1], _StorageType):
            raise pickle.UnpicklingError(f"unsupported persistent id {str(pid)[:80]}")
        return self._load_storage(pid)


def _text(value: Any) -> Any:
    """Python 2 pickles may hold names as bytes."""
    return value.decode("ascii") if isinstance(value, bytes) else value


def _read_zip(archive: zipfile.ZipFile) -> Any:
    """`<name>/data.pkl` with persistent ids ('storage', type, key, location, numel) → `<name>/data/<key>`."""
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(pickles) != 1:
        raise pickle.UnpicklingError("a zip archive without one <name>/data.pkl (not a torch.save file)")
    prefix = pickles[0][:-len("data.pkl")]
    # Recent torch versions record the writer's byte order ("little" on every common machine); older archives
    # have no record and are little-endian.
    if f"{prefix}byteorder" in archive.namelist() and archive.read(f"{prefix}byteorder").strip() != b"little":
        raise pickle.UnpicklingError("big-endian storages are not supported")
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        _, storage_type, key, _location, numel = pid[:5]
        key = _text(key)
        if key not in storages:
            dtype = storage_type.dtype.newbyteorder("<")
            raw = archive.read(f"{prefix}data/{key}")
            if len(raw) != int(numel) * dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key} holds {len(raw)} bytes, expected {numel} elements")
            storages[key] = _Storage(dtype, int(numel))
            storages[key].data = np.frombuffer(raw, dtype)
        return storages[key]

    return _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), load_storage).load()


def _read_legacy(stream: io.BufferedIOBase) -> Any:
    """The legacy stream; storage persistent ids are ('storage', type, root key, location, numel, view), with
    view = None or (view key, element offset, view numel) (storage views: torch < 0.4)."""
    def header() -> Any:
        return _RestrictedUnpickler(stream, _no_storage).load()

    if header() != _LEGACY_MAGIC or header() != _LEGACY_PROTOCOL:
        raise pickle.UnpicklingError("not a legacy torch.save stream (magic number / protocol)")
    header()  # system info: byte order and C type sizes of the writer (storages are little-endian)
    roots: dict[str, _Storage] = {}
    views: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        if len(pid) != 6:
            raise pickle.UnpicklingError(f"unsupported legacy storage id of {len(pid)} fields")
        _, storage_type, root_key, _location, numel, view = pid
        root = roots.setdefault(_text(root_key), _Storage(storage_type.dtype.newbyteorder("<"), int(numel)))
        if view is None:
            return root
        view_key, offset, view_numel = view
        return views.setdefault(_text(view_key), _Storage(root.dtype, int(view_numel), root, int(offset)))

    result = _RestrictedUnpickler(stream, load_storage).load()
    for key in _RestrictedUnpickler(stream, _no_storage).load():
        storage = roots.get(_text(key))
        if storage is None:
            raise pickle.UnpicklingError(f"storage {key} is listed but never used")
        (count,) = struct.unpack("<q", stream.read(8))
        nbytes = count * storage.dtype.itemsize
        # Checked before reading, so a corrupt count never makes us allocate more than the file holds.
        if count != storage.numel or not 0 <= nbytes <= os.fstat(stream.fileno()).st_size - stream.tell():
            raise pickle.UnpicklingError(f"storage {key}: {count} elements recorded, {storage.numel} expected, "
                                         "or more bytes than the file has left")
        storage.data = np.frombuffer(stream.read(nbytes), storage.dtype)
    return result


def _no_storage(pid: tuple) -> _Storage:
    raise pickle.UnpicklingError("a storage outside the pickled object")


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tensor name → numpy array of a `torch.save`d state dict, without torch (zip or legacy format, see the
    module docstring); non-tensor entries are dropped. `WeightsMismatchError` naming `path` for anything else:
    another format (TorchScript, the pre-0.1.10 tar format), a refused global, a truncated or inconsistent file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            if zipfile.is_zipfile(stream):
                with zipfile.ZipFile(stream) as archive:
                    state = _read_zip(archive)
            else:
                stream.seek(0)
                state = _read_legacy(stream)
            if not isinstance(state, Mapping):
                raise WeightsMismatchError(f"{path}: expected a state_dict (name → tensor), "
                                           f"got {type(state).__name__}")
            return {_text(name): value.array() for name, value in state.items() if isinstance(value, _Tensor)}
    except _RefusedGlobal as err:
        raise WeightsMismatchError(f"{path}: not loaded: {err}") from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            struct.error, zipfile.BadZipFile, OSError, OverflowError) as err:
        raise WeightsMismatchError(f"{path}: not a readable PyTorch checkpoint "
                                   f"({type(err).__name__}: {err})") from err


def read_state_dict(path: str | os.PathLike, npz_prefixes: tuple[str, ...] = NPZ_PREFIXES) -> dict[str, np.ndarray]:
    """PyTorch tensor name → numpy array from a `.pth`/`.pt`/`.weight` checkpoint (torch.load with
    weights_only when torch is installed, else `read_torch_checkpoint`) or an `.npz`.

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
