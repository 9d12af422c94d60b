"""KinD's three training stages as Keras models with a custom `train_step`, run by `model.fit`: stage 1 on
(low, high) batches of the paired LOL pipeline (`train.data.paired_dataset`), stages 2 and 3 on the context
crops made from it (`kind_tf.context`).

The original trains each network with its own script (github.com/zhangyhuaee/KinD; the scripts are not copied,
only their behaviour): decomposition_net_train.py → `DecomTrainer`, reflectance_restoration_net_train.py →
`RestorationTrainer`, adjustment_net_train.py → `AdjustTrainer`. Stages 2 and 3 use a frozen DecomNet.

Every trainer reports its total loss as "loss" and each loss term as its own `keras.metrics.Mean`. Under a
distribution strategy each replica's loss is divided by the replica count, so the all-reduced gradient is that
of the mean over replicas; the reported metrics stay unscaled. Quirk kept: the KinD gradient terms min-max
normalise over the whole (local) batch, so a replica's loss is that of the original run on its shard.

Stages 2 and 3 train on `kind_tf.context.ContextCrops` batches as the scripts do: the frozen DecomNet's maps
of each WHOLE image, cropped, then augmented (`decompose_patches`: windows with DecomNet context, exact). Plain
(low, high) patch batches are accepted too; their maps are those of the bare patches (zero padding at the patch
border instead of the neighbouring image, within DecomNet's 12-px receptive radius).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from kind_tf.context import ContextCrops, decompose_patches
from kind_tf.networks import DecomNet, IlluminationAdjustNet, RestorationNet
from kind_tf.pipeline import DEFAULT_RATIO
from losses_tf.kind import DECOMPOSITION_WEIGHTS, adjust_loss, decomposition_loss, restoration_loss

# All three scripts: tf.train.AdamOptimizer(learning_rate=lr), i.e. β 0.9/0.999 and ε 1e-8 (Keras' default ε is
# 1e-7), and lr 1e-4.
ORIGINAL_LEARNING_RATE = 1e-4
ORIGINAL_ADAM_EPSILON = 1e-8
# reflectance_restoration_net_train.py: the target is DecomNet(high)'s R ** 1.2, "to improve the contrast".
ORIGINAL_TARGET_EXPONENT = 1.2
# adjustment_net_train.py: `np.random.randint(0, 2)` picks brightening (low → high) or darkening (high → low).
ORIGINAL_SWAP_PROBABILITY = 0.5
# adjustment_net_train.py: ratio = mean(I_low / (I_high + 0.0001)); the brightening map is 1/ratio + 0.0001.
RATIO_EPSILON = 1e-4


def original_optimizer(learning_rate: float = ORIGINAL_LEARNING_RATE) -> keras.optimizers.Adam:
    """The scripts' optimizer: TF1 `AdamOptimizer` (same update rule as Keras' Adam, with ε 1e-8)."""
    return keras.optimizers.Adam(learning_rate=learning_rate, epsilon=ORIGINAL_ADAM_EPSILON)


def adjustment_examples(i_low, i_high, swap):
    """adjustment_net_train.py's per-patch examples: (input illumination, ratio map, target illumination).

    ratio = mean(I_low / (I_high + 1e-4)) per image. Without swap the net brightens: input I_low, map filled with
    1/ratio + 1e-4, target I_high; with swap it darkens: input I_high, map filled with ratio, target I_low.
    i_low, i_high (N,H,W,1) float; swap (N,) bool → three (N,H,W,1) float32 tensors.
    """
    i_low = ops.cast(i_low, "float32")
    i_high = ops.cast(i_high, "float32")
    ratio = ops.mean(i_low / (i_high + RATIO_EPSILON), axis=(1, 2, 3), keepdims=True)
    swap = ops.reshape(ops.cast(swap, "bool"), (-1, 1, 1, 1))
    ones = ops.ones_like(i_low)
    input_i = ops.where(swap, i_high, i_low)
    ratio_map = ops.where(swap, ratio, 1.0 / ratio + RATIO_EPSILON) * ones
    target_i = ops.where(swap, i_low, i_high)
    return input_i, ratio_map, target_i


# === Base ===


class StageTrainer(keras.Model):
    """Shared DecomNet, `train_step` / `test_step` and trackers of the three stages.

    Subclasses define `TERMS` (loss-dict key → metric name; "total" is reported as "loss") and `loss_terms(data,
    training)` → the loss dict of `losses_tf.kind` for one (local) batch. Only `trainable_variables` are updated.
    `freeze_decom`: the DecomNet is fixed (not trained, run in inference mode), as in stages 2 and 3.
    """

    TERMS: dict[str, str] = {}
    # Sub-networks passed to __init__, (de)serialised in the config.
    NETWORKS: tuple[str, ...] = ("decom_net",)

    def __init__(self, decom_net: DecomNet | None = None, freeze_decom: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.decom_net = decom_net or DecomNet(name="decom_net")
        if freeze_decom:
            self.decom_net.trainable = False
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.term_trackers = [keras.metrics.Mean(name=metric) for metric in self.TERMS.values()]

    @property
    def metrics(self):
        return [self.loss_tracker, *self.term_trackers]

    def build(self, input_shape=None):
        """Creates every variable (the networks work for any H×W, so the shape does not matter)."""
        if not self.built:
            self.build_stage_network(*self.decom_net(ops.zeros((1, 4, 4, 3))))
        self.built = True

    def build_stage_network(self, reflectance, illumination) -> None:
        """Creates the variables of the stage's own network from DecomNet outputs (none for DecomTrainer)."""

    def compile(self, optimizer=None, **kwargs):
        """`optimizer=None` builds the original one (`original_optimizer()`: Adam 1e-4, ε 1e-8)."""
        super().compile(optimizer=optimizer if optimizer is not None else original_optimizer(), **kwargs)

    def decompose(self, images):
        """The frozen DecomNet's (R (N,H,W,3), I (N,H,W,1)), float32, as constants (no gradient)."""
        reflectance, illumination = self.decom_net(images, training=False)
        return (ops.stop_gradient(ops.cast(reflectance, "float32")),
                ops.stop_gradient(ops.cast(illumination, "float32")))

    def decompose_pair(self, data) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """(R_low, I_low, R_high, I_high) of a batch: `ContextCrops` → the whole images' maps at the patches,
        transformed (`kind_tf.context.decompose_patches`); (low, high, ...) patches → their own maps."""
        if isinstance(data, ContextCrops):
            return decompose_patches(self.decom_net, data)
        return (*self.decompose(data[0]), *self.decompose(data[1]))

    def loss_terms(self, data, training: bool = False) -> dict[str, tf.Tensor]:
        """The stage's `losses_tf.kind` loss dict (float32 scalars, "total" included) on one (local) batch."""
        raise NotImplementedError

    def _track(self, terms: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        self.loss_tracker.update_state(terms["total"])
        for key, tracker in zip(self.TERMS, self.term_trackers):
            tracker.update_state(terms[key])
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            terms = self.loss_terms(data, training=True)
            # Local-batch mean / replicas: the all-reduced sum is the gradient of the mean over replicas.
            scaled_loss = self.optimizer.scale_loss(terms["total"] / replicas)
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply(gradients, variables)
        return self._track(terms)

    def test_step(self, data):
        return self._track(self.loss_terms(data, training=False))

    # === Config ===

    def get_config(self):
        networks = {name: keras.saving.serialize_keras_object(getattr(self, name)) for name in self.NETWORKS}
        return {**super().get_config(), **networks}

    @classmethod
    def from_config(cls, config):
        networks = {name: keras.saving.deserialize_keras_object(config[name]) for name in cls.NETWORKS}
        return cls(**{**config, **networks})


# === Trainers ===


@keras.saving.register_keras_serializable(package="kind_tf")
class DecomTrainer(StageTrainer):
    """decomposition_net_train.py: DecomNet on low and high, `losses_tf.kind.decomposition_loss` (weights 1, 1,
    0.01, 0.2, 0.15, 0.15). Data: (low, high), each (N,H,W,3) in [0,1]. `call(image)` → (R, I) of DecomNet.
    """

    TERMS = {key: key for key in DECOMPOSITION_WEIGHTS}

    def __init__(self, decom_net: DecomNet | None = None, **kwargs):
        super().__init__(decom_net, freeze_decom=False, **kwargs)

    def call(self, image, training=False):
        return self.decom_net(image, training=training)

    def loss_terms(self, data, training=False):
        low, high = data[0], data[1]
        # Two separate DecomNet calls, as the script builds the graph twice with shared variables.
        r_low, i_low = self.decom_net(low, training=training)
        r_high, i_high = self.decom_net(high, training=training)
        return decomposition_loss(r_low, i_low, r_high, i_high, low, high)


@keras.saving.register_keras_serializable(package="kind_tf")
class RestorationTrainer(StageTrainer):
    """reflectance_restoration_net_train.py: RestorationNet(R_low, I_low) → R_high ** `target_exponent` (1.2),
    loss `losses_tf.kind.restoration_loss` = MSE + (1 − SSIM) + gradient, with a frozen DecomNet.
    Data: `ContextCrops` (what `llie train kind-restoration` feeds) or (low, high) (N,H,W,3); patches ≥ 11 px.
    `call(image)` → restored reflectance (N,H,W,3).
    """

    TERMS = {"square": "square_loss", "ssim": "ssim_loss", "grad": "grad_loss"}
    NETWORKS = ("decom_net", "restoration_net")

    def __init__(self, decom_net: DecomNet | None = None, restoration_net: RestorationNet | None = None,
                 target_exponent: float = ORIGINAL_TARGET_EXPONENT, **kwargs):
        super().__init__(decom_net, **kwargs)
        self.restoration_net = restoration_net or RestorationNet(name="restoration_net")
        self.target_exponent = float(target_exponent)

    def build_stage_network(self, reflectance, illumination):
        self.restoration_net([reflectance, illumination])

    def call(self, image, training=False):
        return self.restoration_net(list(self.decompose(image)), training=training)

    def loss_terms(self, data, training=False):
        r_low, i_low, r_high, _ = self.decompose_pair(data)
        restored = self.restoration_net([r_low, i_low], training=training)
        # The script's `RR2 ** 1.2`: the high image's reflectance raised to `target_exponent`.
        return restoration_loss(restored, ops.power(r_high, self.target_exponent))

    def get_config(self):
        return {**super().get_config(), "target_exponent": self.target_exponent}


@keras.saving.register_keras_serializable(package="kind_tf")
class AdjustTrainer(StageTrainer):
    """adjustment_net_train.py: the adjust net maps one decomposed illumination to the other given their ratio
    (`adjustment_examples`), in either direction; loss `losses_tf.kind.adjust_loss` = MSE + gradient, with a
    frozen DecomNet.

    Data: `ContextCrops` (`llie train kind-adjust`), (low, high) or (low, high, swap) with swap (N,) bool (True:
    darken high → low). Without `swap`, each image swaps with probability `swap_probability`, drawn statelessly
    from (seed, step, index in the GLOBAL batch), so a step under any number of replicas draws what one device
    draws.
    `call(image, ratio=5.0)` → the adjusted illumination (N,H,W,1) of the image's decomposition.
    """

    TERMS = {"square": "square_loss", "grad": "grad_loss"}
    NETWORKS = ("decom_net", "adjust_net")

    def __init__(self, decom_net: DecomNet | None = None, adjust_net: IlluminationAdjustNet | None = None,
                 swap_probability: float = ORIGINAL_SWAP_PROBABILITY, seed: int = 0, **kwargs):
        super().__init__(decom_net, **kwargs)
        self.adjust_net = adjust_net or IlluminationAdjustNet(name="illumination_adjust_net")
        self.swap_probability = float(swap_probability)
        self.seed = int(seed)

    def build_stage_network(self, reflectance, illumination):
        self.adjust_net([illumination, illumination])

    def call(self, image, ratio=DEFAULT_RATIO, training=False):
        _, illumination = self.decompose(image)
        ratio_map = ops.ones_like(illumination) * ops.reshape(ops.cast(ratio, "float32"), (-1, 1, 1, 1))
        return self.adjust_net([illumination, ratio_map], training=training)

    def swap_flags(self, local_batch: tf.Tensor) -> tf.Tensor:
        """This replica's share of the step's global swap draw: (local_batch,) bool."""
        context = tf.distribute.get_replica_context()
        replica = tf.cast(context.replica_id_in_sync_group if context is not None else 0, tf.int32)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        key = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.optimizer.iterations, tf.int64)])
        draws = tf.random.stateless_uniform([local_batch * replicas], seed=key)
        return draws[replica * local_batch:(replica + 1) * local_batch] < self.swap_probability

    def loss_terms(self, data, training=False):
        _, i_low, _, i_high = self.decompose_pair(data)
        explicit = not isinstance(data, ContextCrops) and len(data) > 2
        swap = data[2] if explicit else self.swap_flags(tf.shape(i_low)[0])
        input_i, ratio_map, target_i = adjustment_examples(i_low, i_high, swap)
        return adjust_loss(self.adjust_net([input_i, ratio_map], training=training), target_i)

    def get_config(self):
        return {**super().get_config(), "swap_probability": self.swap_probability, "seed": self.seed}
