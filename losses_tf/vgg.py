"""VGG16 / VGG19 feature extractors for perceptual and self-feature-preserving losses.

Layers are named as in `keras.applications` (`block{b}_conv{c}`), so ImageNet weights transfer by name. A feature
`relu{b}_{c}` is the output of `block{b}_conv{c}` (the convs carry their ReLU). Inputs are already preprocessed
(see `caffe_preprocess`): float32 NHWC, any H×W.

`weights`: "imagenet" (Keras downloads the Caffe-converted weights once; needs network: offline, a one-line
`NotAvailableError`), a path to a Keras `vgg16/vgg19 ... notop.h5` file or to a `.weights.h5` saved from this
extractor, or None (random init: tests only).
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from train.errors import NotAvailableError

# Keras' name for its downloadable ImageNet weights.
IMAGENET = "imagenet"
_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
_FILTERS = (64, 128, 256, 512, 512)
# ImageNet BGR channel means of the Caffe VGG models.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def caffe_preprocess(images: tf.Tensor, *, input_range: tuple[float, float] = (0.0, 1.0),
                     subtract_mean: bool = True) -> tf.Tensor:
    """RGB images in `input_range` → BGR in [0,255] (minus the ImageNet BGR mean if `subtract_mean`)."""
    lo, hi = input_range
    x = (tf.cast(images, tf.float32) - lo) * (255.0 / (hi - lo))
    x = x[..., ::-1]
    if subtract_mean:
        x = x - tf.constant(CAFFE_BGR_MEAN, tf.float32)
    return x


def _application(arch: str, weights: str) -> keras.Model:
    """keras.applications' VGG without its top, with `weights` ("imagenet", downloaded once, or a notop .h5);
    a failed download becomes `download_failure`'s one-line `NotAvailableError`."""
    app = keras.applications.VGG16 if arch == "vgg16" else keras.applications.VGG19
    try:
        return app(include_top=False, weights=weights, input_shape=(None, None, 3))
    except Exception as err:  # noqa: BLE001 — narrowed by download_failure
        failure = download_failure(arch, err) if weights == IMAGENET else None
        if failure is None:
            raise
        raise failure from err


def download_failure(arch: str, err: Exception) -> NotAvailableError | None:
    """The one-line error for a failed download of the ImageNet `arch` weights, suggesting a local file; None
    when `err` is not a download failure (a bug, to propagate). Offline, Keras' `get_file` raises a bare
    `Exception` ("URL fetch failure on ..."); a socket or file problem is an `OSError` (urllib's `URLError` is
    one)."""
    if not (isinstance(err, OSError) or type(err) is Exception):
        return None
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return NotAvailableError(f"the ImageNet {arch.upper()} weights could not be downloaded ({reason}); pass a "
                             f"local weights path instead of 'imagenet' (Keras' {arch}_weights_tf_dim_ordering_"
                             "tf_kernels_notop.h5, or a .weights.h5 saved from this extractor)")


def _load_weights(model: keras.Model, arch: str, weights: str | os.PathLike | None) -> None:
    if weights is None:
        return
    path = str(weights)
    if path.endswith(".weights.h5"):
        model.load_weights(path)
        return
    source = _application(arch, path)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights(source.get_layer(layer.name).get_weights())


def vgg_features(
    arch: str = "vgg19",
    layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
    *,
    weights: str | os.PathLike | None = "imagenet",
    pool_after_block4: bool = True,
    name: str | None = None,
) -> keras.Model:
    """A frozen model mapping preprocessed images (N, H, W, 3) to the list of `layers` activations.

    `pool_after_block4=False` drops the max-pool between relu4_x and block 5, as EnlightenGAN's VGG16 does
    (`vgg_maxpooling=False`), so relu5_1 sits at stride 8 instead of 16.
    """
    if arch not in _BLOCKS:
        raise ValueError(f"arch must be one of {sorted(_BLOCKS)}, got {arch!r}")
    wanted = list(layers)
    last_block = max(int(layer[4]) for layer in wanted)
    inputs = keras.Input((None, None, 3), name="images")
    x = inputs
    outputs = {}
    for block, (convs, filters) in enumerate(zip(_BLOCKS[arch], _FILTERS), start=1):
        if block > last_block:
            break
        if block > 1 and (block != 5 or pool_after_block4):
            x = keras.layers.MaxPooling2D(2, name=f"block{block - 1}_pool")(x)
        for conv in range(1, convs + 1):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                    name=f"block{block}_conv{conv}")(x)
            outputs[f"relu{block}_{conv}"] = x
    unknown = [layer for layer in wanted if layer not in outputs]
    if unknown:
        raise ValueError(f"unknown {arch} layers {unknown}; available: {sorted(outputs)}")
    model = keras.Model(inputs, [outputs[layer] for layer in wanted], name=name or f"{arch}_features")
    _load_weights(model, arch, weights)
    model.trainable = False
    return model
