"""The three KinD networks, layer for layer as the official TF1 graph (model.py), for any H×W.

Each Keras layer is named after its TF1 variable scope, so `tf1_variables()` maps every checkpoint variable
(`<Scope>/<layer>/weights|biases`) to the Keras variable it loads into. The trainers reuse these classes.
"""

from __future__ import annotations

import keras
from keras import ops

from kind_tf.layers import UpsampleConcat, conv, max_pool

# === Base ===


class TF1Network(keras.Model):
    """A network whose variables carry the names of the original TF1 checkpoint under `TF1_SCOPE`."""

    TF1_SCOPE = ""

    def build(self, input_shape=None):
        # Each sub-layer creates its variables on its first call (any H×W). Skipping Keras' default symbolic
        # trace of the whole network halves the build time; the network is usable once called.
        self.built = True

    def tf1_variables(self) -> dict[str, keras.Variable]:
        """TF1 variable name (e.g. `DecomNet/g_conv1_1/weights`) → Keras variable; call the network once first."""
        mapping = {}
        for layer in self.layers:
            if isinstance(layer, (keras.layers.Conv2D, UpsampleConcat)):
                mapping[f"{self.TF1_SCOPE}/{layer.name}/weights"] = layer.kernel
            if isinstance(layer, keras.layers.Conv2D):
                mapping[f"{self.TF1_SCOPE}/{layer.name}/biases"] = layer.bias
        return mapping


# === Networks ===


@keras.saving.register_keras_serializable(package="kind_tf")
class DecomNet(TF1Network):
    """`DecomNet_simple`: image (N,H,W,3) in [0,1] → (R (N,H,W,3), I (N,H,W,1)), both sigmoid outputs in (0,1).

    A 3-level U-Net (32, 64, 128) gives R through a 1×1 linear conv; the illumination branch convolves the
    first-level features once more and joins them with the last decoder features, then a 1×1 conv gives I.
    235,876 parameters.
    """

    TF1_SCOPE = "DecomNet"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = conv(32, 3, "g_conv1_1")
        self.pool1 = max_pool("pool1")
        self.conv2 = conv(64, 3, "g_conv2_1")
        self.pool2 = max_pool("pool2")
        self.conv3 = conv(128, 3, "g_conv3_1")
        self.up8 = UpsampleConcat(64, name="g_up_1")
        self.conv8 = conv(64, 3, "g_conv8_1")
        self.up9 = UpsampleConcat(32, name="g_up_2")
        self.conv9 = conv(32, 3, "g_conv9_1")
        self.conv10 = conv(3, 1, "g_conv10", activation=None)
        self.l_conv2 = conv(32, 3, "l_conv1_2")
        self.l_conv4 = conv(1, 1, "l_conv1_4", activation=None)

    def call(self, image):
        conv1 = self.conv1(image)
        conv2 = self.conv2(self.pool1(conv1))
        conv3 = self.conv3(self.pool2(conv2))
        conv8 = self.conv8(self.up8([conv3, conv2]))
        conv9 = self.conv9(self.up9([conv8, conv1]))
        reflectance = ops.sigmoid(self.conv10(conv9))
        i_features = ops.concatenate([self.l_conv2(conv1), conv9], axis=-1)
        illumination = ops.sigmoid(self.l_conv4(i_features))
        return reflectance, illumination


@keras.saving.register_keras_serializable(package="kind_tf")
class RestorationNet(TF1Network):
    """`Restoration_net`: (R (N,H,W,3), I (N,H,W,1)) → restored reflectance (N,H,W,3) in (0,1).

    The input is concat [R, I]; a 5-level U-Net (32, 64, 128, 256, 512; two lrelu convs per level, decoder 256,
    128, 64, 32), then a 3×3 linear conv and a sigmoid. 7,760,739 parameters.
    """

    TF1_SCOPE = "Restoration_net"
    _WIDTHS = (32, 64, 128, 256, 512)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Two convs per level, flat lists (pairs are [2k], [2k+1]). Decoder levels 6..9 mirror encoder levels 4..1.
        self.encoder = [conv(width, 3, f"de_conv{level}_{index}")
                        for level, width in enumerate(self._WIDTHS, start=1) for index in (1, 2)]
        self.pools = [max_pool(f"pool{level}") for level in range(1, 5)]
        decoder_levels = list(zip(range(6, 10), self._WIDTHS[3::-1]))
        self.ups = [UpsampleConcat(width, name=f"up_{level}") for level, width in decoder_levels]
        self.decoder = [conv(width, 3, f"de_conv{level}_{index}") for level, width in decoder_levels
                        for index in (1, 2)]
        self.conv10 = conv(3, 3, "de_conv10", activation=None)

    def call(self, inputs):
        reflectance, illumination = inputs
        x = ops.concatenate([reflectance, illumination], axis=-1)
        skips = []
        for level in range(len(self._WIDTHS)):
            if level > 0:
                x = self.pools[level - 1](x)
            x = self.encoder[2 * level + 1](self.encoder[2 * level](x))
            skips.append(x)
        for level, (up, skip) in enumerate(zip(self.ups, skips[3::-1])):
            x = self.decoder[2 * level + 1](self.decoder[2 * level](up([x, skip])))
        return ops.sigmoid(self.conv10(x))


@keras.saving.register_keras_serializable(package="kind_tf")
class IlluminationAdjustNet(TF1Network):
    """`Illumination_adjust_net`: (I (N,H,W,1), ratio map (N,H,W,1)) → adjusted I (N,H,W,1) in (0,1).

    Input concat [I, ratio map]; four 3×3 convs (32, 32, 32, 1). Quirk kept: the last conv is ALSO followed
    by lrelu before the sigmoid, so the output is sigmoid of a leaky-rectified value. 19,393 parameters.
    """

    TF1_SCOPE = "Illumination_adjust_net"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.convs = [conv(width, 3, f"en_conv_{index}") for index, width in enumerate((32, 32, 32, 1), 1)]

    def call(self, inputs):
        illumination, ratio_map = inputs
        x = ops.concatenate([illumination, ratio_map], axis=-1)
        for layer in self.convs:
            x = layer(x)
        return ops.sigmoid(x)


def build_networks() -> tuple[DecomNet, RestorationNet, IlluminationAdjustNet]:
    """The three networks, built for any H×W (variables created), with fresh Glorot-uniform weights."""
    decom = DecomNet(name="decom_net")
    restoration = RestorationNet(name="restoration_net")
    adjust = IlluminationAdjustNet(name="illumination_adjust_net")
    image = ops.zeros((1, 4, 4, 3))
    illumination = ops.zeros((1, 4, 4, 1))
    decom(image)
    restoration([image, illumination])
    adjust([illumination, illumination])
    return decom, restoration, adjust
