"""train.torch_weights: reading PyTorch state dicts (.pth / .npz) and assigning them to Keras layers."""

import keras
import numpy as np
import pytest

from train.errors import WeightsMismatchError
from train.torch_weights import assign_state_dict, read_state_dict


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


def test_reads_legacy_pth(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "net.pth"
    torch.save({"module.conv.weight": torch.ones(2, 3)}, path, _use_new_zipfile_serialization=False)
    state = read_state_dict(path)
    assert list(state) == ["conv.weight"] and state["conv.weight"].shape == (2, 3)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(WeightsMismatchError, match="bad.pth: not a readable PyTorch checkpoint"):
        read_state_dict(bad)
