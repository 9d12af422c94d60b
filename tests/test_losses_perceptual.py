import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from losses_tf import perceptual, vgg
from losses_tf.vgg import caffe_preprocess, vgg_features
from tests.loss_testing import (
    assert_float32_under_mixed_bfloat16,
    assert_round_trips,
    bfloat16_policy,
    gradient,
    random_images,
)
from train.errors import NotAvailableError


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    """A random VGG19 extractor and its saved weights (a local file: no download in tests)."""
    keras.utils.set_random_seed(0)
    extractor = vgg_features("vgg19", perceptual.PERCEPTUAL_LAYERS, weights=None)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.weights.h5"
    extractor.save_weights(str(path))
    return extractor, str(path)


@pytest.fixture(scope="module")
def loss_l1(vgg_weights):
    return perceptual.PerceptualLoss(weights=vgg_weights[1])


@pytest.fixture(scope="module")
def images():
    return random_images(0), random_images(1)


def _np_perceptual(extractor, y_true, y_pred, layer_weights, distance):
    features_true = [f.numpy().astype(np.float64) for f in extractor(caffe_preprocess(y_true))]
    features_pred = [f.numpy().astype(np.float64) for f in extractor(caffe_preprocess(y_pred))]
    total = np.zeros(y_true.shape[0])
    for weight, true, pred in zip(layer_weights, features_true, features_pred):
        difference = np.abs(pred - true) if distance == "l1" else (pred - true) ** 2
        total += weight * difference.reshape(difference.shape[0], -1).mean(axis=1)
    return total


def test_equals_direct_computation_with_the_same_extractor(vgg_weights, loss_l1, images):
    extractor, _ = vgg_weights
    expected = _np_perceptual(extractor, *images, (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1), "l1")
    assert expected.min() > 0
    np.testing.assert_allclose(loss_l1.call(*images).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(float(loss_l1(*images)), expected.mean(), rtol=1e-5)
    # The weights file really was loaded: same features as the extractor it came from.
    np.testing.assert_array_equal(loss_l1.extractor.get_weights()[0], extractor.get_weights()[0])


def test_l2_distance_and_custom_layer_weights(vgg_weights, images):
    extractor, _ = vgg_weights
    function_value = perceptual.perceptual_loss(*images, extractor, layer_weights=(0.5, 2.0, 0.0, 1.0, 3.0),
                                                distance="l2")
    expected = _np_perceptual(extractor, *images, (0.5, 2.0, 0.0, 1.0, 3.0), "l2")
    np.testing.assert_allclose(function_value.numpy(), expected, rtol=1e-5)


def test_identical_images_give_zero_loss_and_zero_gradient(loss_l1, images):
    y_true = images[0]
    assert float(loss_l1(y_true, y_true)) == 0.0
    at_minimum = gradient(loss_l1, y_true, y_true.copy())
    assert np.isfinite(at_minimum).all() and np.abs(at_minimum).max() == 0.0
    assert np.isfinite(gradient(loss_l1, *images)).all()


def test_no_gradient_flows_into_the_target(loss_l1, images):
    y_true, y_pred = (tf.constant(image) for image in images)
    with tf.GradientTape() as tape:
        tape.watch(y_true)
        value = loss_l1(y_true, y_pred)
    assert tape.gradient(value, y_true) is None


def test_vgg_built_lazily_inside_tf_function_in_float32_under_mixed_policy(vgg_weights, images):
    loss = perceptual.PerceptualLoss(weights=vgg_weights[1])
    assert loss.extractor is None
    with bfloat16_policy():
        value = tf.function(loss)(tf.cast(images[0], tf.bfloat16), tf.cast(images[1], tf.bfloat16))
    assert value.dtype == tf.float32 and np.isfinite(float(value))
    assert {layer.dtype_policy.name for layer in loss.extractor.layers} == {"float32"}
    assert_float32_under_mixed_bfloat16(loss, *images)


def test_serialization_round_trip_keeps_the_weights_path(vgg_weights, images, tmp_path):
    loss = perceptual.PerceptualLoss(layer_weights=(1.0, 0.5, 0.0, 2.0, 1.0), distance="l2",
                                     weights=vgg_weights[1], name="vgg_l2")
    assert loss.get_config()["weights"] == vgg_weights[1]
    assert_round_trips(loss, *images, tmp_path)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="distance"):
        perceptual.PerceptualLoss(distance="l3", weights=None)
    with pytest.raises(ValueError, match="layer_weights"):
        perceptual.PerceptualLoss(layers=("relu1_1",), weights=None)


def test_local_keras_vgg19_notop_h5_gives_the_keras_application_features(tmp_path, images):
    # A Keras VGG19 notop .h5 in the layout of keras.applications' own file (random weights, fixed seed: no
    # download): the loss's extractor must compute exactly (bit for bit) the application's relu{b}_1 activations.
    keras.utils.set_random_seed(11)
    application = keras.applications.VGG19(weights=None, include_top=False)
    path = tmp_path / "vgg19_notop.h5"
    application.save(str(path))  # legacy HDF5: what weights=<path> of keras.applications reads
    loss = perceptual.PerceptualLoss(weights=str(path))
    extractor = loss.build_extractor()
    reference = keras.Model(application.inputs,
                            [application.get_layer(f"block{b}_conv1").output for b in range(1, 6)])
    batch = caffe_preprocess(images[0])
    for ours, theirs in zip(extractor(batch), reference(batch)):
        assert float(np.abs(theirs).max()) > 0  # a live layer, not all-zero ReLUs
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    # ... and the weights are the application's, layer by layer, not merely similar.
    for layer in extractor.layers:
        if isinstance(layer, keras.layers.Conv2D):
            for got, want in zip(layer.get_weights(), application.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(got, want)


def test_a_failed_vgg_download_is_a_one_line_error():
    """Offline, Keras' download raises a bare Exception ("URL fetch failure"): one line suggesting a local path;
    any other failure of the download call is a bug, left to propagate (None). No download is attempted."""
    offline = Exception("URL fetch failure on https://storage.googleapis.com/vgg19_notop.h5: None -- [Errno -3] "
                        "Temporary failure in name resolution\n(second line of the report)")
    error = vgg.download_failure("vgg19", offline)
    assert isinstance(error, NotAvailableError) and "\n" not in str(error)
    assert re.fullmatch(r"the ImageNet VGG19 weights could not be downloaded \(URL fetch failure .*resolution\); "
                        r"pass a local weights path .*", str(error))
    assert "could not be downloaded (ConnectionRefusedError)" in str(vgg.download_failure("vgg16",
                                                                                         ConnectionRefusedError()))
    assert vgg.download_failure("vgg19", KeyError("not a download problem")) is None


def test_the_vgg_loader_raises_the_download_failure(monkeypatch):
    """The ImageNet loader turns what the Keras constructor raises offline into that one line (the constructor is
    replaced: nothing is downloaded) and lets any other error through."""
    def offline(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/vgg19_notop.h5: None")

    monkeypatch.setattr(keras.applications, "VGG19", offline)
    with pytest.raises(NotAvailableError, match=r"VGG19 weights could not be downloaded \(URL fetch failure"):
        vgg_features("vgg19", ("relu1_1",), weights=vgg.IMAGENET)

    def broken(**kwargs):
        raise KeyError("not a download problem")

    monkeypatch.setattr(keras.applications, "VGG19", broken)
    with pytest.raises(KeyError, match="not a download problem"):
        vgg_features("vgg19", ("relu1_1",), weights=vgg.IMAGENET)