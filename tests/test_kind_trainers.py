"""KinD's stage trainers (kind_tf/trainers.py): each train_step reports exactly the losses_tf.kind losses, updates
only the trained network, learns, and gives under 2 replicas what one device gives."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kind_tf.context import ContextCrops, context_crop
from kind_tf.networks import build_networks
from kind_tf.trainers import (AdjustTrainer, DecomTrainer, RestorationTrainer, StageTrainer, adjustment_examples,
                              original_optimizer)
from losses_tf.kind import adjust_loss, decomposition_loss, restoration_loss
from train.augment import dihedral

SIZE = 24
RTOL = 1e-5


@pytest.fixture(scope="module")
def batch():
    """A fixed (low, high) pair batch (2, 24, 24, 3): a smooth bright scene and its dark, noisy version."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    high = np.stack([np.stack([0.55 + 0.4 * np.sin(4 * x + 2 * k + c) * np.cos(3 * y - c) for c in range(3)], -1)
                     for k in range(2)]).astype(np.float32)
    low = np.clip(0.2 * high**1.5 + rng.normal(0, 0.01, high.shape), 0, 1).astype(np.float32)
    return tf.constant(low), tf.constant(high)


@pytest.fixture(scope="module")
def whole_pair():
    """Two (low, high) whole-image pairs (40, 48, 3), like `batch` but larger than a context window."""
    y, x = np.mgrid[0:40, 0:48] / SIZE
    high = np.stack([np.stack([0.55 + 0.4 * np.sin(3 * x + 2 * k + c) * np.cos(2 * y - c) for c in range(3)], -1)
                     for k in range(2)]).astype(np.float32)
    low = np.clip(0.2 * high**1.5 + np.random.default_rng(2).normal(0, 0.01, high.shape), 0, 1).astype(np.float32)
    return tf.constant(low), tf.constant(high)


CONTEXT_PATCH = 12  # ≥ 11, SSIM's window
CONTEXT_SAMPLES = ((0, 20, 3), (25, 9, 6))  # (top, left, dihedral k) of each image's patch


@pytest.fixture(scope="module")
def crops(whole_pair):
    """A `ContextCrops` batch of `CONTEXT_SAMPLES`, as `llie train kind-restoration|kind-adjust` feeds."""
    low, high = whole_pair
    samples = [context_crop((low[i], high[i]), top, left, k, CONTEXT_PATCH)
               for i, (top, left, k) in enumerate(CONTEXT_SAMPLES)]
    return ContextCrops(*(tf.stack(field) for field in zip(*samples)))


def _whole_image_maps(decom, whole_pair):
    """The scripts' maps: each WHOLE image decomposed, then the patch cropped, then transformed."""
    maps = []
    for images in whole_pair:
        reflectance, illumination = decom(images)
        maps += [reflectance, illumination]
    return [tf.stack([dihedral(m[i, top:top + CONTEXT_PATCH, left:left + CONTEXT_PATCH], k)
                      for i, (top, left, k) in enumerate(CONTEXT_SAMPLES)]) for m in maps]


@pytest.fixture(scope="module")
def networks():
    keras.utils.set_random_seed(1)
    return build_networks()


def _fresh(networks):
    """Copies of the module's networks (same weights), so each test starts from the same point."""
    copies = build_networks()
    for copy, net in zip(copies, networks):
        copy.set_weights(net.get_weights())
    return copies


def _weights(net) -> list[np.ndarray]:
    return [np.array(w) for w in net.get_weights()]


def _compiled(trainer: StageTrainer, optimizer=None) -> StageTrainer:
    trainer.build()
    trainer.compile(optimizer=optimizer or original_optimizer(1e-3), run_eagerly=True)
    return trainer


def _metrics(terms: dict, names: dict) -> dict:
    return {"loss": terms["total"], **{names[key]: terms[key] for key in names}}


def _check_step_then_learning(trainer, data, expected, trained, frozen=None, steps=4):
    """One step reports `expected` (metric → value) and moves every variable of `trained` only; a few more
    steps on the same batch lower the loss."""
    trained_before = _weights(trained)
    frozen_before = _weights(frozen) if frozen is not None else []
    logs = trainer.train_step(data)
    assert set(logs) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(float(logs[name]), float(value), rtol=RTOL, err_msg=name)
    for after, before in zip(_weights(trained), trained_before):
        assert np.abs(after - before).max() > 0
    for after, before in zip(_weights(frozen) if frozen is not None else [], frozen_before):
        np.testing.assert_array_equal(after, before)
    for _ in range(steps):
        trainer.train_step(data)
    assert float(trainer.loss_terms(data)["total"]) < float(expected["loss"])


def test_decom_trainer_step(batch, networks):
    decom, _, _ = _fresh(networks)
    low, high = batch
    expected = decomposition_loss(*decom(low), *decom(high), low, high)
    trainer = _compiled(DecomTrainer(decom))
    assert [v.path for v in trainer.trainable_variables] == [v.path for v in decom.trainable_variables]
    _check_step_then_learning(trainer, batch, _metrics(expected, DecomTrainer.TERMS), trained=decom)


def test_restoration_trainer_step(batch, networks):
    decom, restoration, _ = _fresh(networks)
    low, high = batch
    r_low, i_low = decom(low)
    # The script's RR2 ** 1.2. (numpy's float32 power differs from TF's by 1 ulp, which moves 1 − SSIM by ~2e-5
    # relative on these smooth patches: the SSIM term amplifies input rounding, so the same op is used here.)
    target = tf.pow(decom(high)[0], 1.2)
    expected = restoration_loss(restoration([r_low, i_low]), target)
    trainer = _compiled(RestorationTrainer(decom, restoration))
    assert not decom.trainable and len(trainer.trainable_variables) == len(restoration.trainable_variables)
    _check_step_then_learning(trainer, batch, _metrics(expected, RestorationTrainer.TERMS), trained=restoration,
                              frozen=decom)


def test_adjust_trainer_step(batch, networks):
    decom, _, adjust = _fresh(networks)
    low, high = batch
    i_low, i_high = np.asarray(decom(low)[1]), np.asarray(decom(high)[1])
    swap = np.array([False, True])
    ratio = (i_low / (i_high + 1e-4)).mean(axis=(1, 2, 3))
    # Image 0 brightens (low → high, map 1/ratio + 1e-4), image 1 darkens (high → low, map ratio).
    inputs = np.stack([i_low[0], i_high[1]])
    maps = np.stack([np.full_like(i_low[0], 1 / ratio[0] + 1e-4), np.full_like(i_low[0], ratio[1])])
    targets = np.stack([i_high[0], i_low[1]])
    expected = adjust_loss(adjust([inputs, maps]), targets)
    trainer = _compiled(AdjustTrainer(decom, adjust))
    _check_step_then_learning(trainer, (low, high, tf.constant(swap)), _metrics(expected, AdjustTrainer.TERMS),
                              trained=adjust, frozen=decom)


def test_restoration_trainer_on_context_crops_uses_the_whole_image_maps(whole_pair, crops, networks):
    decom, restoration, _ = _fresh(networks)
    r_low, i_low, r_high, _ = _whole_image_maps(decom, whole_pair)
    expected = restoration_loss(restoration([r_low, i_low]), tf.pow(r_high, 1.2))
    trainer = _compiled(RestorationTrainer(decom, restoration))
    _check_step_then_learning(trainer, crops, _metrics(expected, RestorationTrainer.TERMS), trained=restoration,
                              frozen=decom)


def test_adjust_trainer_on_context_crops_uses_the_whole_image_maps(whole_pair, crops, networks):
    decom, _, adjust = _fresh(networks)
    _, i_low, _, i_high = _whole_image_maps(decom, whole_pair)
    trainer = _compiled(AdjustTrainer(decom, adjust))
    # One swap for every step (the draw is keyed by the step): the learning check then compares one objective.
    swap = tf.constant([False, True])
    trainer.swap_flags = lambda _local_batch: swap
    input_i, ratio_map, target_i = adjustment_examples(i_low, i_high, swap)
    expected = adjust_loss(adjust([input_i, ratio_map]), target_i)
    _check_step_then_learning(trainer, crops, _metrics(expected, AdjustTrainer.TERMS), trained=adjust, frozen=decom)


def test_adjustment_examples_on_a_constructed_pair():
    i_low = np.full((2, 4, 4, 1), 0.2, np.float32)
    i_low[:, 0] = 0.1  # mean(I_low / (I_high + 1e-4)) = (0.1 + 3·0.2) / 4 / 0.8001
    i_high = np.full((2, 4, 4, 1), 0.8, np.float32)
    ratio = (0.1 + 3 * 0.2) / 4 / 0.8001
    input_i, ratio_map, target_i = (np.asarray(t) for t in adjustment_examples(i_low, i_high, [False, True]))
    np.testing.assert_array_equal(input_i[0], i_low[0])  # brighten: low → high
    np.testing.assert_array_equal(target_i[0], i_high[0])
    np.testing.assert_allclose(ratio_map[0], 1 / ratio + 1e-4, rtol=1e-6)
    np.testing.assert_array_equal(input_i[1], i_high[1])  # darken: high → low
    np.testing.assert_array_equal(target_i[1], i_low[1])
    np.testing.assert_allclose(ratio_map[1], ratio, rtol=1e-6)


def test_swap_flags_are_global_seeded_and_fair(two_cpu_strategy):
    with two_cpu_strategy.scope():
        mirrored = AdjustTrainer(seed=3)
        mirrored.compile()
    single = AdjustTrainer(seed=3)
    single.compile()
    per_replica = two_cpu_strategy.run(lambda: mirrored.swap_flags(tf.constant(3)))
    local = [np.asarray(t) for t in two_cpu_strategy.experimental_local_results(per_replica)]
    np.testing.assert_array_equal(np.concatenate(local), np.asarray(single.swap_flags(tf.constant(6))))
    draws = np.asarray(single.swap_flags(tf.constant(4000)))
    assert 0.45 < draws.mean() < 0.55
    single.optimizer.iterations.assign(1)  # a new step draws anew
    assert not np.array_equal(np.asarray(single.swap_flags(tf.constant(4000))), draws)
    never = AdjustTrainer(swap_probability=0.0)
    never.compile()
    assert not np.asarray(never.swap_flags(tf.constant(50))).any()


def _first_seed_with_mixed_flags() -> int:
    """A seed whose step-0 draw swaps one of two images and not the other (a wrong replica slice shows)."""
    return next(seed for seed in range(100)
                if len(set(np.asarray(tf.random.stateless_uniform([2], [seed, 0]) < 0.5))) == 2)


@pytest.mark.parametrize("stage, context", [("decom", False), ("restoration", False), ("adjust", False),
                                            ("restoration", True), ("adjust", True)])
def test_two_replicas_step_equals_mean_of_one_device_shard_steps(stage, context, batch, crops, networks,
                                                                 two_cpu_strategy):
    """2 replicas, global batch [a, b] → each replica's loss is the original's on its shard (the gradient terms
    normalise over the local batch), so the SGD step equals the mean of the one-device steps on [a] and [b].
    `context`: the batch is `ContextCrops` (windows decomposed per sample inside the replica step)."""
    seed = _first_seed_with_mixed_flags()
    low, high = batch
    data = crops if context else (low, high)

    def make():
        decom, restoration, adjust = _fresh(networks)
        trainer = {"decom": lambda: DecomTrainer(decom),
                   "restoration": lambda: RestorationTrainer(decom, restoration),
                   "adjust": lambda: AdjustTrainer(decom, adjust, seed=seed)}[stage]()
        return _compiled(trainer, keras.optimizers.SGD(1.0))

    single = make()
    start = _weights(single)
    flags = np.asarray(single.swap_flags(tf.constant(2))) if stage == "adjust" else None
    shard_weights, shard_losses = [], []
    for k in range(2):
        single.set_weights(start)
        if context:
            shard = ContextCrops(*(field[k:k + 1] for field in crops))
            if stage == "adjust":  # the shard's share of the step's global swap draw, as on its replica
                single.swap_flags = lambda _local, k=k: tf.constant(flags[k:k + 1])
        else:
            shard = (low[k:k + 1], high[k:k + 1]) + ((tf.constant(flags[k:k + 1]),) if stage == "adjust" else ())
        shard_losses.append(float(single.train_step(shard)["loss"]))
        single.loss_tracker.reset_state()
        shard_weights.append(_weights(single))
    with two_cpu_strategy.scope():
        mirrored = make()
    history = mirrored.fit(tf.data.Dataset.from_tensors(data), epochs=1, steps_per_epoch=1, verbose=0,
                           shuffle=False)
    moved = 0.0
    for got, first, second, before in zip(_weights(mirrored), *shard_weights, start):
        want = (first + second) / 2
        moved = max(moved, np.abs(want - before).max())
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert moved > 1e-3  # the comparison is not between unchanged weights
    np.testing.assert_allclose(history.history["loss"][0], np.mean(shard_losses), rtol=RTOL)


def test_config_round_trip():
    trainer = RestorationTrainer(target_exponent=1.5)
    clone = RestorationTrainer.from_config(trainer.get_config())
    assert clone.target_exponent == 1.5 and not clone.decom_net.trainable
    adjust = AdjustTrainer.from_config(AdjustTrainer(swap_probability=0.25, seed=7).get_config())
    assert (adjust.swap_probability, adjust.seed) == (0.25, 7)
    assert DecomTrainer.from_config(DecomTrainer().get_config()).decom_net.trainable
