"""`EnlightenGAN`: the unpaired training model (upstream `single_model.py` with the official options).

One `train_step` is upstream `optimize_parameters`: G forward on the (randomly darkened) low-light image; six
32² patches at random offsets shared by the batch and by fake_B, real_B and the undarkened input; G loss = global
relativistic LSGAN + local LSGAN (hybrid) + SFP loss (global and mean over patches); D_global relativistic
LSGAN, D_local LSGAN averaged over the patches; then one Adam step for G and one for both discriminators.

Data: `(low, normal)` batches float32 NHWC in [0,1] (e.g. `train.data.unpaired_dataset`), H, W ≥ patch_size.

Distribution: gradients are global-batch means under any strategy. Two statistics stay per replica: BatchNorm's
(as upstream's DataParallel) and the means inside the relativistic losses (upstream gathers D's outputs and takes
them over the whole batch), so with several replicas those terms differ slightly from a one-device run. Every
replica needs at least one image: feed only full global batches (`train_command.training_dataset` keeps only full
ones under several replicas).
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from enlighten_tf.convert import load_vgg16
from enlighten_tf.discriminators import GlobalDiscriminator, LocalDiscriminator
from enlighten_tf.enhancer import EnlightenGANEnhancer, enhance
from enlighten_tf.generator import Generator
from enlighten_tf.layers import attention_map
from losses_tf.adversarial import relativistic_lsgan_generator_loss
from losses_tf.core import float32_policy
from losses_tf.enlighten import enlighten_discriminator_losses, local_generator_loss, sfp_image_loss, sfp_vgg16
from train.errors import NotAvailableError

# === Config ===

NUM_PATCHES = 6  # patchD (1 main patch) + patchD_3 (5 more)
PATCH_SIZE = 32
DARKEN_PROBABILITY = 0.5  # upstream `vary=1`: half the A images are darkened
DARKEN_TIMES_PERCENT = (200, 400)  # `randint(low_times, high_times) / 100`, both ends inclusive
LEARNING_RATE = 1e-4
ADAM_BETAS = (0.5, 0.999)
TRACKERS = ("g_loss", "g_gan_global", "g_gan_local", "sfp", "d_global", "d_local")


def default_optimizer(learning_rate=LEARNING_RATE) -> keras.optimizers.Optimizer:
    """Upstream's Adam(lr 1e-4, betas (0.5, 0.999)) for G, D_A and D_P."""
    return keras.optimizers.Adam(learning_rate, beta_1=ADAM_BETAS[0], beta_2=ADAM_BETAS[1])


def build_sfp_extractor(weights: str | os.PathLike | None) -> keras.Model:
    """The VGG16 relu5_1 extractor of the SFP loss, always float32.

    `weights`: "imagenet" (Keras' Caffe VGG16, the same weights as upstream's `vgg16.weight`; needs network once),
    a Keras `.h5`/`.weights.h5`, or upstream's PyTorch `vgg16.weight` (any other suffix, or an .npz twin).
    """
    if weights is None:
        raise ValueError("EnlightenGAN's self feature preserving loss needs real VGG16 weights (a random VGG "
                         "makes it meaningless): pass 'imagenet' or a local weights file (--vgg-weights)")
    path = os.fspath(weights)
    with float32_policy():
        if path == "imagenet":
            try:
                return sfp_vgg16("imagenet")
            except NotAvailableError as err:  # offline: say which flag takes a local copy
                raise NotAvailableError(f"{err}; for llie train enlightengan: --vgg-weights PATH (that file, or "
                                        "upstream's vgg16.weight / an .npz of it)") from err
        if path.endswith(".h5"):
            return sfp_vgg16(path)
        return load_vgg16(sfp_vgg16(None), path)


def darken(images_m11: tf.Tensor, key: tf.Tensor, probability: float = DARKEN_PROBABILITY) -> tf.Tensor:
    """Upstream `vary=1` augmentation: with probability p per image, `((x+1)/2/t)·2−1`, t = randint(200, 400)/100.

    images (N, H, W, 3) in [-1,1]; key: (2,) int64 stateless seed."""
    apply_key, times_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    count = tf.shape(images_m11)[:1]
    apply = tf.random.stateless_uniform(count, apply_key) < probability
    low, high = DARKEN_TIMES_PERCENT
    times = tf.cast(tf.random.stateless_uniform(count, times_key, low, high + 1, dtype=tf.int32), tf.float32) / 100.0
    darkened = ((images_m11 + 1.0) / 2.0 / times[:, None, None, None]) * 2.0 - 1.0
    return tf.where(apply[:, None, None, None], darkened, images_m11)


def random_patch_offsets(key: tf.Tensor, height, width, num_patches: int = NUM_PATCHES,
                         patch_size: int = PATCH_SIZE) -> tf.Tensor:
    """(num_patches, 2) int32 (top, left) offsets, one per patch for the whole batch.

    Upstream draws `randint(0, max(0, size − patch − 1))` (inclusive), so the last row/column is never covered
    (an off-by-one kept on purpose).
    """
    h_key, w_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    tops = tf.random.stateless_uniform([num_patches], h_key, 0, tf.maximum(height - patch_size, 1), dtype=tf.int32)
    lefts = tf.random.stateless_uniform([num_patches], w_key, 0, tf.maximum(width - patch_size, 1), dtype=tf.int32)
    return tf.stack([tops, lefts], axis=1)


def extract_patches(images: tf.Tensor, offsets: tf.Tensor, patch_size: int = PATCH_SIZE) -> tf.Tensor:
    """Patches at `offsets` (P, 2) (top, left) of every image: (N, H, W, C) → (P·N, size, size, C), patch-major."""
    offsets = tf.cast(offsets, tf.int32)
    patches = [tf.slice(images, [0, offsets[i, 0], offsets[i, 1], 0], [-1, patch_size, patch_size, -1])
               for i in range(offsets.shape[0])]
    return tf.concat(patches, axis=0)


# === Model ===


@keras.saving.register_keras_serializable(package="enlighten_tf")
class EnlightenGAN(keras.Model):
    """EnlightenGAN training model (keras-io GAN style): `compile(g_optimizer=, d_optimizer=)` then `fit`.

    Args:
        vgg_weights: VGG16 weights of the SFP loss (see `build_sfp_extractor`); ignored if `sfp_extractor`.
        sfp_extractor: a ready float32 VGG16 relu5_1 extractor (tests: fixture weights).
        align_corners: the generator's upsampling mode. Default True, like the released checkpoint and the
            enhancer's default, so trained weights behave the same in `EnlightenGANEnhancer`.
        patch_size, num_patches: local discriminator patches (official 32, 1 + 5).
        darken_probability: probability of the random darkening of the input (official 0.5; 0 disables).
        seed: seed of the in-graph randomness (darkening, patch offsets), folded with the step number.
        generator, global_discriminator, local_discriminator: networks to train (default: fresh ones).

    `call(images)` is the enhancer ([0,1] → [0,1], G in eval mode), so sample rendering works unchanged;
    `enhancer()` returns an `EnlightenGANEnhancer` sharing the generator.
    """

    def __init__(self, vgg_weights: str | os.PathLike | None = "imagenet", *, sfp_extractor: keras.Model | None = None,
                 align_corners: bool = True, patch_size: int = PATCH_SIZE, num_patches: int = NUM_PATCHES,
                 darken_probability: float = DARKEN_PROBABILITY, seed: int = 0, generator: Generator | None = None,
                 global_discriminator: GlobalDiscriminator | None = None,
                 local_discriminator: LocalDiscriminator | None = None, **kwargs):
        super().__init__(**kwargs)
        self.vgg_weights = None if vgg_weights is None else os.fspath(vgg_weights)
        self.sfp_extractor = sfp_extractor if sfp_extractor is not None else build_sfp_extractor(self.vgg_weights)
        self.generator = generator if generator is not None else Generator(align_corners, name="generator")
        self.global_discriminator = global_discriminator or GlobalDiscriminator(name="global_discriminator")
        self.local_discriminator = local_discriminator or LocalDiscriminator(name="local_discriminator")
        self.patch_size = int(patch_size)
        self.num_patches = int(num_patches)
        self.darken_probability = float(darken_probability)
        self.seed = int(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in TRACKERS}
        self.built = True  # every network builds itself

    def compile(self, g_optimizer: keras.optimizers.Optimizer | None = None,
                d_optimizer: keras.optimizers.Optimizer | None = None, jit_compile: bool = False, **kwargs):
        """Sets the optimizers (default upstream Adam for each) and builds them.

        `d_optimizer` steps both discriminators: their losses depend on disjoint variables and Adam is
        per-variable, so this equals upstream's two Adams (D_A, D_P) with the same settings. Under
        `mixed_float16` each optimizer is wrapped in a `LossScaleOptimizer` (one loss scale for both Ds).
        XLA is off by default (slower on CPU: see the xla rows of bench/README.md).
        """
        super().compile(optimizer=None, jit_compile=jit_compile, **kwargs)
        optimizers = [g_optimizer or default_optimizer(), d_optimizer or default_optimizer()]
        if self.dtype_policy.name == "mixed_float16":
            optimizers = [opt if isinstance(opt, keras.optimizers.LossScaleOptimizer)
                          else keras.optimizers.LossScaleOptimizer(opt) for opt in optimizers]
        self.g_optimizer, self.d_optimizer = optimizers
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self._discriminator_variables())

    def _discriminator_variables(self) -> list:
        return self.global_discriminator.trainable_variables + self.local_discriminator.trainable_variables

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, images):
        return enhance(self.generator, images)

    def enhancer(self) -> EnlightenGANEnhancer:
        """An `EnlightenGANEnhancer` sharing this model's generator (its weights file is what `llie` loads)."""
        return EnlightenGANEnhancer(generator=self.generator)

    def _local_predictions(self, patches: tf.Tensor) -> tf.Tensor:
        """Local D on all patches at once (no batch-coupled layers, so equal to per-patch calls), reshaped to
        (P, N, h, w, 1)."""
        predictions = self.local_discriminator(patches)
        return tf.reshape(predictions, tf.concat([[self.num_patches, -1], tf.shape(predictions)[1:]], axis=0))

    def compute_losses(self, real_A: tf.Tensor, input_img: tf.Tensor, real_B: tf.Tensor, offsets: tf.Tensor
                       ) -> dict[str, tf.Tensor]:
        """Every loss of one training iteration (float32 scalars; G in training mode), plus `fake_B` and `latent`.

        real_A: the undarkened low-light batch (the SFP target), input_img: the G input (darkened or not),
        real_B: normal-light batch, all (N, H, W, 3) in [-1,1]; offsets: (num_patches, 2) (top, left).
        Keys: g_loss = g_gan_global + g_gan_local + sfp (the two GAN terms of
        `losses_tf.enlighten.enlighten_generator_gan_loss`, reported apart); d_global, d_local (upstream loss_D_A,
        loss_D_P: `enlighten_discriminator_losses`).
        The discriminator losses reuse D(fake_B): their gradients are only taken w.r.t. the D variables, so
        this equals upstream's D step on the detached fake_B, without a second D forward.
        """
        fake_B, latent = self.generator((input_img, attention_map(input_img)), training=True)
        pred_real = self.global_discriminator(real_B)
        pred_fake = self.global_discriminator(fake_B)
        fake_patches = extract_patches(fake_B, offsets, self.patch_size)
        real_patches = extract_patches(real_B, offsets, self.patch_size)
        input_patches = extract_patches(real_A, offsets, self.patch_size)
        pred_real_local = self._local_predictions(real_patches)
        pred_fake_local = self._local_predictions(fake_patches)
        g_gan_global = relativistic_lsgan_generator_loss(pred_real, pred_fake)
        g_gan_local = local_generator_loss(pred_fake_local)
        sfp = (tf.reduce_mean(sfp_image_loss(fake_B, real_A, self.sfp_extractor))
               + tf.reduce_mean(sfp_image_loss(fake_patches, input_patches, self.sfp_extractor)))
        d_global, d_local = enlighten_discriminator_losses(pred_real, pred_fake, pred_real_local, pred_fake_local)
        return {
            "fake_B": fake_B, "latent": latent,
            "g_loss": g_gan_global + g_gan_local + sfp, "g_gan_global": g_gan_global, "g_gan_local": g_gan_local,
            "sfp": sfp, "d_global": d_global, "d_local": d_local,
        }

    def _random_keys(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(patch key, darkening key) for this step: a function of (seed, step); the darkening also of the replica
        (each replica holds different images), the offsets not (upstream draws them once per global batch)."""
        base = tf.constant([self.seed, 0], tf.int64)
        step_key = tf.random.experimental.stateless_fold_in(base, tf.cast(self.g_optimizer.iterations, tf.int64))
        patch_key, darken_key = tf.unstack(tf.random.experimental.stateless_split(step_key, 2))
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group if context is not None else 0
        return patch_key, tf.random.experimental.stateless_fold_in(darken_key, tf.cast(replica, tf.int64))

    def train_step(self, data):
        low, normal = data
        real_A = tf.cast(low, tf.float32) * 2.0 - 1.0
        real_B = tf.cast(normal, tf.float32) * 2.0 - 1.0
        patch_key, darken_key = self._random_keys()
        input_img = darken(real_A, darken_key, self.darken_probability)
        shape = tf.shape(real_A)
        offsets = random_patch_offsets(patch_key, shape[1], shape[2], self.num_patches, self.patch_size)
        # Per-replica losses are local means; /replicas makes the summed gradients the global-batch mean.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape(persistent=True) as tape:
            losses = self.compute_losses(real_A, input_img, real_B, offsets)
            g_scaled = self.g_optimizer.scale_loss(losses["g_loss"] / replicas)
            d_scaled = self.d_optimizer.scale_loss((losses["d_global"] + losses["d_local"]) / replicas)
        g_variables = self.generator.trainable_variables
        d_variables = self._discriminator_variables()
        g_gradients = tape.gradient(g_scaled, g_variables)
        d_gradients = tape.gradient(d_scaled, d_variables)
        del tape
        self.g_optimizer.apply(g_gradients, g_variables)
        self.d_optimizer.apply(d_gradients, d_variables)
        for name, tracker in self.trackers.items():
            tracker.update_state(losses[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def get_config(self):
        return {**super().get_config(), "vgg_weights": self.vgg_weights,
                "align_corners": self.generator.align_corners, "patch_size": self.patch_size,
                "num_patches": self.num_patches, "darken_probability": self.darken_probability, "seed": self.seed}
