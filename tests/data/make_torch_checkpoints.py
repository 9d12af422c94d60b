"""Writes the small PyTorch checkpoints of tests/data (see README.md there) and checks them with torch itself.

Needs torch (not a dependency of this project): run it from a separate environment, e.g.
    python3 -m venv /tmp/venv-torch && /tmp/venv-torch/bin/pip install torch==2.13.0 numpy
    /tmp/venv-torch/bin/python tests/data/make_torch_checkpoints.py          # write, then verify
    /tmp/venv-torch/bin/python tests/data/make_torch_checkpoints.py --verify  # verify only
Verification: `torch.load(weights_only=True)` of every file equals `torch_checkpoints_expected.npz`, the arrays
the test suite compares the torch-free reader (train.torch_weights.read_torch_checkpoint) with.
"""

from __future__ import annotations

import argparse
import collections
import io
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "torch_checkpoints_expected.npz"
FILES = ("torch2_zip.pth", "torch2_legacy.pth", "torch031_legacy.pth")


def torch2_state() -> collections.OrderedDict:
    """Random tensors covering what a state dict holds, with a DataParallel `module.` prefix."""
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=generator)
    state = collections.OrderedDict()
    state["module.conv.weight"] = torch.randn(4, 3, 3, 3, generator=generator)
    state["module.conv.bias"] = torch.randn(4, generator=generator)
    state["module.bn.running_var"] = torch.rand(4, generator=generator) + 0.5
    state["module.bn.num_batches_tracked"] = torch.tensor(7)  # int64 0-d
    state["module.index"] = torch.randint(-2**40, 2**40, (2, 3), generator=generator)  # int64 beyond int32
    state["module.half"] = torch.randn(5, generator=generator).half()
    state["module.param"] = torch.nn.Parameter(torch.randn(3, generator=generator))  # keep_vars=True style
    state["module.empty"] = torch.zeros(0, 3)
    # Three views of one storage: transposed (strides (1, 5)), a window at offset 7, a flat slice at offset 3.
    state["module.transposed"] = base.t()
    state["module.window"] = base[1:4, 2:]
    state["module.flat"] = base.view(-1)[3:9]
    return state


# === torch 0.3.1's legacy layout, written without torch 0.3.1 (which does not install on Python 3.8+) ===


class _Storage031:
    """A 0.3.1 storage: a root (its own data) or a view (element offset and length into a root)."""

    def __init__(self, key: str, data: np.ndarray, root: "_Storage031 | None" = None, offset: int = 0):
        self.key, self.data, self.root, self.offset = key, data, root, offset


class _Tensor031:
    def __init__(self, storage: _Storage031, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _Pickler031(pickle.Pickler):
    """0.3.1's `torch.save`: tensors reduce to `torch._utils._rebuild_tensor(storage, offset, size, stride)`;
    storages become ('storage', type, root key, location, root numel, view metadata or None)."""

    def reducer_override(self, obj):
        if isinstance(obj, _Tensor031):
            return torch._utils._rebuild_tensor, (obj.storage, obj.offset, obj.size, obj.stride)
        return NotImplemented

    def persistent_id(self, obj):
        if not isinstance(obj, _Storage031):
            return None
        root = obj.root or obj
        storage_type = torch.FloatStorage if root.data.dtype == np.float32 else torch.LongStorage
        view = None if obj.root is None else (obj.key, obj.offset, len(obj.data))
        return ("storage", storage_type, root.key, "cuda:0", len(root.data), view)


def torch031_file() -> tuple[bytes, dict[str, np.ndarray]]:
    """The bytes of a 0.3.1-layout file and the arrays its tensors hold."""
    rng = np.random.default_rng(31)
    floats = _Storage031("140000000000001", rng.normal(size=50).astype(np.float32))
    longs = _Storage031("140000000000002", np.array([3, -2**35, 7], np.int64))
    view = _Storage031("140000000000003", floats.data[36:40], root=floats, offset=36)  # a storage view
    tensors = collections.OrderedDict([
        ("module.conv.weight", _Tensor031(floats, 0, (2, 2, 3, 3), (18, 9, 3, 1))),
        ("module.conv.bias", _Tensor031(view, 0, (2,), (1,))),
        ("module.bn.running_mean", _Tensor031(view, 2, (2,), (1,))),
        ("module.fc.weight", _Tensor031(floats, 40, (5, 2), (1, 5))),  # non-contiguous (transposed)
        ("module.steps", _Tensor031(longs, 0, (3,), (1,))),
    ])
    expected = {
        "module.conv.weight": floats.data[:36].reshape(2, 2, 3, 3),
        "module.conv.bias": floats.data[36:38],
        "module.bn.running_mean": floats.data[38:40],
        "module.fc.weight": floats.data[40:50].reshape(2, 5).T,
        "module.steps": longs.data,
    }
    stream = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001,
                   {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 8}}):
        pickle.dump(header, stream, protocol=2)
    _Pickler031(stream, protocol=2).dump(tensors)
    roots = sorted([floats, longs], key=lambda s: s.key)
    pickle.dump([s.key for s in roots], stream, protocol=2)
    for storage in roots:
        stream.write(struct.pack("<q", len(storage.data)) + storage.data.astype(storage.data.dtype.newbyteorder("<"))
                     .tobytes())
    return stream.getvalue(), expected


def write() -> None:
    state = torch2_state()
    torch.save(state, HERE / "torch2_zip.pth")
    torch.save(state, HERE / "torch2_legacy.pth", _use_new_zipfile_serialization=False)
    data, old = torch031_file()
    (HERE / "torch031_legacy.pth").write_bytes(data)
    expected = {f"torch2_zip.pth/{k}": v.detach().numpy() for k, v in state.items()}
    expected.update({f"torch2_legacy.pth/{k}": v.detach().numpy() for k, v in state.items()})
    expected.update({f"torch031_legacy.pth/{k}": np.ascontiguousarray(v) for k, v in old.items()})
    np.savez(EXPECTED, **expected)


def verify() -> None:
    expected = np.load(EXPECTED)
    for name in FILES:
        loaded = torch.load(HERE / name, map_location="cpu", weights_only=True)
        keys = sorted(k[len(name) + 1:] for k in expected.files if k.startswith(name + "/"))
        assert sorted(loaded) == keys, (name, sorted(loaded), keys)
        for key in keys:
            got, want = loaded[key].detach().numpy(), expected[f"{name}/{key}"]
            assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), (name, key)
        print(f"{name}: torch {torch.__version__} torch.load(weights_only=True) = expected arrays "
              f"({len(keys)} tensors, {(HERE / name).stat().st_size} bytes)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verify", action="store_true", help="only check the existing files")
    if not parser.parse_args().verify:
        write()
    verify()
    sys.exit(0)
