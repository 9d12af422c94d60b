"""`SCI`: the training model (original `Network(stage=3)`): weight-shared cascade of illumination estimation and
self-calibration, trained without references by `losses_tf.sci.sci_loss` summed over stages.

Stage loop (original quirk 3), x = the original input in every stage, in_op = x at stage 0:
    i = enhance(in_op);  r = clamp(x / i, 0, 1);  att = calibrate(r) = r − sigmoid(...);  in_op = x + att.
The lists hold in_op (before the update), i, r and |att| of each stage.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from losses_tf.sci import sci_loss
from sci_tf.enhancer import SCIEnhancer
from sci_tf.networks import CalibrateNetwork, EnhanceNetwork
from sci_tf.optimizer import TorchAdam


def clip_coefficient(grad_norm: tf.Tensor, max_norm: float) -> tf.Tensor:
    """`torch.nn.utils.clip_grad_norm_`'s factor: min(1, max_norm / (norm + 1e-6)) (note the 1e-6)."""
    return tf.minimum(max_norm / (grad_norm + 1e-6), 1.0)


@keras.saving.register_keras_serializable(package="sci_tf")
class SCI(keras.Model):
    """SCI training model. `call(x, training=...)`: x (N, H, W, 3) float32 in [0, 1] → dict of per-stage lists
    (each entry (N, H, W, 3)): "ilist" illumination ∈ [1e-4, 1], "rlist" reflectance ∈ [0, 1], "inlist" stage
    input x + att (may leave [0, 1]), "attlist" |att|.

    `compile()` defaults to the original optimizer (`TorchAdam`: Adam 3e-4, coupled L2 3e-4). `train_step`
    takes low-light batches only (`x`, or a tuple whose first item is x) and clips the gradient at global norm
    `grad_clip_norm` (5 in the original) as `clip_grad_norm_` does. Metrics: "loss", "grad_norm" (pre-clip, mean
    over the steps with a finite norm; 0 if none had one).
    """

    def __init__(self, stages: int = 3, enhance_channels: int = 3, enhance_layers: int = 1,
                 calibrate_channels: int = 16, calibrate_layers: int = 3, grad_clip_norm: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        self.stages = stages
        self.enhance_channels = enhance_channels
        self.enhance_layers = enhance_layers
        self.calibrate_channels = calibrate_channels
        self.calibrate_layers = calibrate_layers
        self.grad_clip_norm = grad_clip_norm
        # One network of each kind, shared by all stages (the original reuses the same modules).
        self.enhance = EnhanceNetwork(enhance_channels, enhance_layers, name="enhance")
        self.calibrate = CalibrateNetwork(calibrate_channels, calibrate_layers, name="calibrate")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.grad_norm_tracker = keras.metrics.Mean(name="grad_norm")

    def build(self, input_shape=(None, None, None, 3)):
        self.enhance.build(input_shape)
        self.calibrate.build(input_shape)
        self.built = True

    def call(self, x, training=None):
        lists = {"ilist": [], "rlist": [], "inlist": [], "attlist": []}
        stage_input = x
        for _ in range(self.stages):
            lists["inlist"].append(stage_input)
            illumination = self.enhance(stage_input, training=training)
            reflectance = ops.clip(x / illumination, 0.0, 1.0)
            attention = self.calibrate(reflectance, training=training)
            stage_input = x + attention
            lists["ilist"].append(illumination)
            lists["rlist"].append(reflectance)
            lists["attlist"].append(ops.abs(attention))
        return lists

    def sci_loss(self, x, training=None) -> tf.Tensor:
        """Σ over stages of sci_loss(stage input, illumination) (original `Network._loss`), float32 scalar."""
        outputs = self(x, training=training)
        return tf.add_n([tf.reduce_mean(sci_loss(stage_input, illumination))
                         for stage_input, illumination in zip(outputs["inlist"], outputs["ilist"])])

    def enhancer(self) -> SCIEnhancer:
        """A new `SCIEnhancer` holding a copy of the current EnhanceNetwork weights (what SCI deploys)."""
        enhancer = SCIEnhancer(self.enhance_channels, self.enhance_layers)
        enhancer.build()
        enhancer.enhance.set_weights(self.enhance.get_weights())
        return enhancer

    # === Training ===
    def compile(self, optimizer=None, **kwargs):
        """`optimizer=None` builds the original one: `TorchAdam()` (Adam lr 3e-4, β 0.9/0.999, ε 1e-8,
        coupled L2 weight decay 3e-4). Clipping is done in `train_step`, not by the optimizer. A built model
        also gets its optimizer built here."""
        super().compile(optimizer=optimizer if optimizer is not None else TorchAdam(), **kwargs)
        if self.built:
            # Optimizer state exists from the start, so saving, loading and resuming see the same variables.
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        # Keras skips compile() on load for models that override it unless this is overridden too.
        self.compile(**keras.saving.deserialize_keras_object(config))

    @property
    def metrics(self):
        return [self.loss_tracker, self.grad_norm_tracker]

    def clip_gradients(self, gradients: list[tf.Tensor]) -> tuple[list[tf.Tensor], tf.Tensor]:
        """Scales this replica's gradients so that their all-replica sum is clipped at `grad_clip_norm`.

        Returns (scaled local gradients, pre-clip global norm). The norm is taken on the *all-reduced*
        gradient (what one device would see), then the factor is applied to the local gradients, which the
        optimizer sums across replicas. Keras' own `global_clipnorm` clips each replica's gradient before
        the all-reduce, which is not what `clip_grad_norm_` on one device does. Under a `LossScaleOptimizer`
        the norm is measured on the unscaled gradient.
        """
        context = tf.distribute.get_replica_context()
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients) if context is not None else gradients
        norm = tf.linalg.global_norm(total)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            norm = norm / tf.cast(self.optimizer.dynamic_scale, norm.dtype)
        coefficient = clip_coefficient(norm, self.grad_clip_norm)
        return [g * tf.cast(coefficient, g.dtype) for g in gradients], norm

    def train_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self.sci_loss(x, training=True)
            # Each replica's gradient is 1/replicas of its local-mean gradient: the all-reduced sum is the
            # gradient of the global-batch mean.
            scaled_loss = self.optimizer.scale_loss(loss / replicas)
        # With stages=1 the calibration module does not reach the loss (no gradient), as in the original.
        pairs = [(g, v) for g, v in zip(tape.gradient(scaled_loss, self.trainable_variables),
                                        self.trainable_variables) if g is not None]
        gradients, grad_norm = self.clip_gradients([g for g, _ in pairs])
        self.optimizer.apply(gradients, [v for _, v in pairs])
        self.loss_tracker.update_state(loss)
        # Finite norms only: under mixed_float16 a loss-scale overflow gives an inf/NaN norm for a step that the
        # LossScaleOptimizer then skips, and one such value would turn the epoch's mean into NaN.
        finite = tf.math.is_finite(grad_norm)
        self.grad_norm_tracker.update_state(tf.where(finite, grad_norm, tf.zeros_like(grad_norm)),
                                            sample_weight=tf.cast(finite, grad_norm.dtype))
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        self.loss_tracker.update_state(self.sci_loss(x, training=False))
        return {self.loss_tracker.name: self.loss_tracker.result()}

    # === Config ===
    def get_config(self):
        return {**super().get_config(), "stages": self.stages, "enhance_channels": self.enhance_channels,
                "enhance_layers": self.enhance_layers, "calibrate_channels": self.calibrate_channels,
                "calibrate_layers": self.calibrate_layers, "grad_clip_norm": self.grad_clip_norm}
