"""train.torch_weights: reading PyTorch state dicts (.pth / .npz) and assigning them to Keras layers.

The torch-free reader runs here without torch: on the authors' SCI .pt files (zip format, saved on cuda:0) and on
the small checkpoints of tests/data (zip and legacy formats, torch 2.13 and torch 0.3.1 layouts; see the README
there for how they were made and checked with torch.load).
"""

import io
import os
import pickle
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.reference import reference_path
from train.errors import WeightsMismatchError
from train.torch_weights import assign_state_dict, read_state_dict, read_torch_checkpoint

DATA = Path(__file__).resolve().parent / "data"
CHECKPOINTS = ("torch2_zip.pth", "torch2_legacy.pth", "torch031_legacy.pth")


def _layers():
    conv = keras.layers.Conv2D(4, 3, name="conv")
    conv.build((None, None, None, 2))
    norm = keras.layers.BatchNormalization(name="bn")
    norm.build((None, None, None, 4))
    return {"features.0": conv, "features.1": norm}


def _state(rng):
    return {"features.0.weight": rng.normal(size=(4, 2, 3, 3)).astype(np.float32),  # OIHW
            "features.0.bias": rng.normal(size=4).astype(np.float32),
            "features.1.weight": rng.normal(size=4).astype(np.float32),
            "features.1.bias": rng.normal(size=4).astype(np.float32),
            "features.1.running_mean": rng.normal(size=4).astype(np.float32),
            "features.1.running_var": rng.uniform(0.5, 2, size=4).astype(np.float32),
            "features.1.num_batches_tracked": np.array(7)}


def test_assigns_transposed_kernels_and_bn_statistics():
    layers, state = _layers(), _state(np.random.default_rng(0))
    assign_state_dict(layers, {name: value.astype(np.float16) for name, value in state.items()}, source="s")
    conv, norm = layers["features.0"], layers["features.1"]
    fp16_grid = state["features.0.weight"].astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(conv.kernel.numpy(), fp16_grid.transpose(2, 3, 1, 0))
    assert conv.kernel.dtype == "float32"
    np.testing.assert_allclose(norm.moving_variance.numpy(), state["features.1.running_var"], rtol=1e-3)


def test_errors_name_the_tensor_and_assign_nothing():
    layers, state = _layers(), _state(np.random.default_rng(1))
    before = [w.numpy().copy() for layer in layers.values() for w in layer.weights]
    missing = {k: v for k, v in state.items() if k != "features.1.running_var"}
    with pytest.raises(WeightsMismatchError, match=r"ckpt: missing tensor\(s\) features.1.running_var"):
        assign_state_dict(layers, missing, source="ckpt")
    with pytest.raises(WeightsMismatchError, match=r"unexpected tensor\(s\) head.weight"):
        assign_state_dict(layers, {**state, "head.weight": np.zeros(1)}, source="ckpt")
    assign_state_dict(layers, {**state, "head.weight": np.zeros(1)}, source="ckpt", allow_unexpected=True)
    after_allowed = [w.numpy().copy() for layer in layers.values() for w in layer.weights]
    assert not np.array_equal(after_allowed[0], before[0])
    wrong = {**state, "features.0.weight": np.zeros((4, 3, 3, 3), np.float32)}
    message = r"features.0.weight has shape \(4, 3, 3, 3\), expected \(4, 2, 3, 3\)"
    with pytest.raises(WeightsMismatchError, match=message):
        assign_state_dict(layers, wrong, source="ckpt")
    for old, new in zip(after_allowed, [w.numpy() for layer in layers.values() for w in layer.weights]):
        np.testing.assert_array_equal(old, new)  # the failed call changed nothing


def test_reads_npz_with_fixture_and_data_parallel_prefixes(tmp_path):
    path = tmp_path / "ckpt.npz"
    np.savez(path, **{"w/module.conv.weight": np.ones(2), "w/conv.bias": np.zeros(1), "input": np.ones(3)})
    assert sorted(read_state_dict(path)) == ["conv.bias", "conv.weight"]
    plain = tmp_path / "plain.npz"
    np.savez(plain, **{"module.a": np.ones(1), "b": np.ones(1)})
    assert sorted(read_state_dict(plain)) == ["a", "b"]


def test_unreadable_files(tmp_path):
    with pytest.raises(WeightsMismatchError, match="no such weights file"):
        read_state_dict(tmp_path / "absent.pth")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(WeightsMismatchError, match="junk.npz"):
        read_state_dict(junk)


def test_reads_legacy_pth_through_torch(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "net.pth"
    torch.save({"module.conv.weight": torch.ones(2, 3)}, path, _use_new_zipfile_serialization=False)
    state = read_state_dict(path)
    assert list(state) == ["conv.weight"] and state["conv.weight"].shape == (2, 3)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(WeightsMismatchError, match="bad.pth: not a readable PyTorch checkpoint"):
        read_state_dict(bad)


# === Without torch ===


@pytest.mark.parametrize("name", ["easy", "medium", "difficult"])
def test_sci_pt_files_equal_their_npz_twins_without_torch(name):
    # Zip format (torch >= 1.6), 83 tensors saved on cuda:0: the location tag is ignored.
    state = read_torch_checkpoint(reference_path("sci", f"weights/{name}.pt"))
    with np.load(reference_path("sci", f"weights/{name}_state_dict.npz")) as twin:
        assert sorted(state) == sorted(twin.files)
        for key in twin.files:
            assert state[key].dtype == twin[key].dtype and state[key].shape == twin[key].shape, key
            np.testing.assert_array_equal(state[key], twin[key], err_msg=key)


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_reads_torch_checkpoints_without_torch(name):
    with np.load(DATA / "torch_checkpoints_expected.npz") as data:
        expected = {key[len(name) + 1:]: data[key] for key in data.files if key.startswith(name + "/")}
    state = read_torch_checkpoint(DATA / name)
    assert sorted(state) == sorted(expected) and all(key.startswith("module.") for key in state)
    for key, want in expected.items():
        got = state[key]
        assert (got.dtype, got.shape) == (want.dtype, want.shape), key
        np.testing.assert_array_equal(got, want, err_msg=key)
        assert got.flags.c_contiguous and got.flags.writeable, key  # a copy, not a strided view of the file
    stripped = read_state_dict(DATA / name)  # the torch-free path when torch is absent; the prefix goes
    assert sorted(stripped) == sorted(key[len("module."):] for key in expected)


class _RunsCommand:
    """Unpickling this would run a shell command (what a malicious checkpoint does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _legacy_stream(payload: bytes) -> bytes:
    header = b"".join(pickle.dumps(value, protocol=2) for value in (0x1950A86A20F9469CFC6C, 1001, {}))
    return header + payload + pickle.dumps([], protocol=2)


def _zip_archive(files: dict[str, bytes]) -> bytes:
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return stream.getvalue()


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_restricted_unpickler_refuses_other_globals(tmp_path, layout):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"conv.weight": _RunsCommand(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    path.write_bytes(_zip_archive({"evil/data.pkl": payload}) if layout == "zip" else _legacy_stream(payload))
    with pytest.raises(WeightsMismatchError, match=rf"evil.pth: not loaded: refused to load {os.system.__module__}"
                                                   r"\.system \(only tensors and OrderedDict are read\)"):
        read_torch_checkpoint(path)
    assert not marker.exists()


def _edited_zip(source: Path, edit) -> bytes:
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    edit(files)
    return _zip_archive(files)


@pytest.mark.parametrize("contents, message", [
    (lambda: b"garbage", "not a readable PyTorch checkpoint"),
    (lambda: (DATA / "torch2_legacy.pth").read_bytes()[:-40], "not a readable PyTorch checkpoint"),  # truncated
    (lambda: _zip_archive({"model/constants.pkl": b""}), "without one <name>/data.pkl"),  # e.g. TorchScript
    (lambda: _edited_zip(DATA / "torch2_zip.pth", lambda f: f.update({"torch2_zip/byteorder": b"big"})),
     "big-endian storages are not supported"),
    (lambda: _edited_zip(DATA / "torch2_zip.pth", lambda f: f.update(
        {name: data[:-4] for name, data in f.items() if "/data/" in name})), r"holds \d+ bytes, expected"),
    (lambda: _legacy_stream(pickle.dumps([1, 2], protocol=2)), "expected a state_dict"),
])
def test_torch_free_reader_names_the_file_of_anything_else(tmp_path, contents, message):
    path = tmp_path / "weights.pth"
    path.write_bytes(contents())
    with pytest.raises(WeightsMismatchError, match=rf"{path}: .*{message}"):
        read_torch_checkpoint(path)
