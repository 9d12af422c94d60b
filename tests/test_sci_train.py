"""SCI training: one full original step (clip + Adam + coupled L2), the optimizer, model.fit, distribution."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sci_tf.convert import load_state_dict, read_state_dict
from sci_tf.enhancer import SCIEnhancer
from sci_tf.model import SCI, clip_coefficient
from sci_tf.optimizer import TorchAdam
from tests.reference import reference, reference_path
from tests.sci_testing import PRE_NORM_BIASES, fixture_state, torch_order, torch_variables
from train.fit import precision_policy

LEARNING_RATE = 3e-4


@pytest.fixture(scope="module")
def seed0():
    return reference("sci", "train_network_seed0")


def _sci(state: dict, **kwargs) -> SCI:
    model = SCI(**kwargs)
    load_state_dict(model, state)
    return model


def test_one_original_training_step(seed0):
    model = _sci(fixture_state("train_network_seed0"))
    model.compile(run_eagerly=True)  # the original optimizer is the default; eager saves ~10 s of tracing
    logs = model.train_on_batch(seed0["input"], return_dict=True)
    assert logs["loss"] == pytest.approx(float(seed0["loss"]), rel=1e-5)
    # Pre-clip global norm: the fixture is 240.2796; a float64 run of this port gives 240.3063 and float32
    # 240.3068, so the fixture's own float32 error (1.1e-4) bounds what can match.
    assert logs["grad_norm"] == pytest.approx(float(seed0["step1/grad_total_norm"]), rel=2e-4)
    tensors = torch_variables(model)
    for name, (variable, is_kernel) in tensors.items():
        if not variable.trainable:
            continue
        got, want = torch_order(variable, is_kernel), seed0[f"step1/{name}"]
        if name in PRE_NORM_BIASES:
            # Zero-initialised, with a float-noise gradient (exact value 0): Adam moves them by at most lr,
            # in a direction set by the noise, in both implementations.
            assert np.abs(got).max() <= LEARNING_RATE * 1.001 and np.abs(want).max() <= LEARNING_RATE * 1.001
            continue
        # atol 1e-6 = 0.3 % of one Adam step (lr 3e-4).
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=name)


def _torch_adam_numpy(param, grads, lr=3e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=3e-4):
    """float64 transcription of torch.optim.Adam.step (coupled weight decay, eps added to sqrt(v̂))."""
    param, m, v = param.astype(np.float64), 0.0, 0.0
    for step, grad in enumerate(grads, start=1):
        grad = grad + weight_decay * param
        m = betas[0] * m + (1 - betas[0]) * grad
        v = betas[1] * v + (1 - betas[1]) * grad * grad
        denom = np.sqrt(v) / np.sqrt(1 - betas[1] ** step) + eps
        param = param - lr / (1 - betas[0] ** step) * m / denom
    return param


def test_torch_adam_matches_pytorch_update_where_keras_adam_does_not():
    rng = np.random.default_rng(0)
    start = rng.normal(0, 0.02, 6).astype(np.float32)
    # Tiny gradients (1e-8 … 1e-6), where the placement of eps decides the step size.
    grads = [(rng.normal(0, 1, 6) * np.array([1e-8, 1e-7, 1e-6, 1e-3, 1.0, 5.0])).astype(np.float32)
             for _ in range(3)]
    want = _torch_adam_numpy(start, grads)

    def run(optimizer):
        variable = keras.Variable(start)
        for grad in grads:
            optimizer.apply([tf.constant(grad)], [variable])
        return variable.numpy()

    np.testing.assert_allclose(run(TorchAdam()), want, rtol=1e-6, atol=1e-9)
    keras_adam = run(keras.optimizers.Adam(3e-4, epsilon=1e-8))  # AdamW-free, no decay: clearly different
    assert np.abs(keras_adam - want).max() > 1e-5
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(TorchAdam(1e-3, coupled_weight_decay=0.1)))
    assert isinstance(clone, TorchAdam) and clone.coupled_weight_decay == 0.1 and clone.epsilon == 1e-8


def test_clip_coefficient_is_torchs():
    assert float(clip_coefficient(tf.constant(240.0), 5.0)) == pytest.approx(5.0 / (240.0 + 1e-6), rel=1e-7)
    assert float(clip_coefficient(tf.constant(2.0), 5.0)) == 1.0


def _images(seed: int, count: int, size: int = 24) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.0, 0.25, (count, size, size, 3))
    return (base * rng.uniform(0.3, 1.0, (count, 1, 1, 1))).astype(np.float32)


def test_fit_lowers_the_loss_and_hands_over_the_enhancer():
    keras.utils.set_random_seed(0)
    x = _images(0, 4)
    model = SCI(stages=2)  # graph mode (as in real training); 2 stages so the calibration module learns too
    model.build()
    model.compile(optimizer=TorchAdam(learning_rate=3e-3))
    before = float(model.sci_loss(x, training=True))
    history = model.fit(tf.data.Dataset.from_tensor_slices(x).batch(2).repeat(), epochs=1, steps_per_epoch=10,
                        verbose=0)
    after = float(model.sci_loss(x, training=True))
    assert after < 0.9 * before
    assert np.isfinite(history.history["loss"][0]) and history.history["grad_norm"][0] > 0
    enhancer = model.enhancer()
    assert isinstance(enhancer, SCIEnhancer)
    np.testing.assert_allclose(enhancer(x), model(x, training=False)["rlist"][0], atol=1e-6)


def _one_fit_step(state, images, strategy, grad_clip_norm, learning_rate):
    with strategy.scope():
        model = _sci(state, stages=2, grad_clip_norm=grad_clip_norm)
        # Eager: the same train_step without tracing it once per replica (which costs a minute on 2 cores).
        model.compile(optimizer=keras.optimizers.SGD(learning_rate), run_eagerly=True)
    model.fit(tf.data.Dataset.from_tensor_slices(images).batch(len(images)), epochs=1, verbose=0)
    return [np.asarray(v) for v in model.trainable_variables]


@pytest.mark.parametrize("grad_clip_norm, learning_rate", [(1e6, 1e-3), (1e-2, 1.0)])
def test_two_replicas_equal_one_device(seed0, two_cpu_strategy, grad_clip_norm, learning_rate):
    # BatchNorm statistics are per replica (as PyTorch DataParallel), so each replica gets the same image:
    # then a global batch of 2 on 2 replicas must equal it on one device. Plain SGD makes the update
    # proportional to the gradient, so a missing 1/replicas loss scaling would double it; clip norm 1e-2
    # (far below the true norm) checks that the global norm is taken after the all-reduce, not per replica.
    images = np.repeat(seed0["input"][:1], 2, axis=0)
    state = read_state_dict(reference_path("sci", "weights/medium_state_dict.npz"))
    single = _one_fit_step(state, images, tf.distribute.get_strategy(), grad_clip_norm, learning_rate)
    mirrored = _one_fit_step(state, images, two_cpu_strategy, grad_clip_norm, learning_rate)
    initial = [np.asarray(v) for v in _sci(state, stages=2).trainable_variables]
    moved = max(np.abs(a - w0).max() for a, w0 in zip(single, initial))
    assert moved > 1e-4
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(b, a, atol=1e-3 * moved, rtol=0)


def _by_path(model: SCI) -> dict[str, np.ndarray]:
    """Trainable variables by path inside the model ("enhance/block/conv/bias"; the model's own name dropped)."""
    return {v.path.split("/", 1)[1]: np.asarray(v) for v in model.trainable_variables}


def test_graph_mode_torch_adam_three_stages_on_two_replicas_equals_one_device(seed0, two_cpu_strategy):
    # What real training runs: model.fit in graph mode (tf.function), the original optimizer and 3 stages, two
    # Adam steps. Same image on both replicas (per-replica BatchNorm statistics, as above). The one-device
    # reference runs the same train_step eagerly (saves a trace).
    images = np.repeat(seed0["input"][:1, :24, :24], 2, axis=0)
    state = read_state_dict(reference_path("sci", "weights/medium_state_dict.npz"))
    runs = {}
    for label, strategy, eager in (("one device", tf.distribute.get_strategy(), True),
                                   ("mirrored", two_cpu_strategy, False)):
        with strategy.scope():
            model = _sci(state, stages=3)
            model.compile(optimizer=TorchAdam(learning_rate=1e-3), run_eagerly=eager)
        history = model.fit(tf.data.Dataset.from_tensor_slices(images).batch(2).repeat(), epochs=1,
                            steps_per_epoch=2, verbose=0).history
        assert int(model.optimizer.iterations.numpy()) == 2, label
        runs[label] = (history, _by_path(model))
    (history, single), (mirrored_history, mirrored) = runs["one device"], runs["mirrored"]
    # The pre-clip norm of the all-reduced gradient: a missing 1/replicas scaling would double it.
    assert mirrored_history["grad_norm"][0] == pytest.approx(history["grad_norm"][0], rel=1e-5)
    assert mirrored_history["loss"][0] == pytest.approx(history["loss"][0], rel=1e-5)
    initial = _by_path(_sci(state, stages=3))
    pre_norm_biases = [path for path in single if path.endswith("conv/bias") and "norm" not in path
                       and ("block" in path or "calibrate/in_conv" in path)]
    assert len(pre_norm_biases) == 4
    for path, value in single.items():
        if path in pre_norm_biases:
            # Float-noise gradient (exact value 0, see PRE_NORM_BIASES): Adam turns it into ±lr steps whose
            # sign differs between the devices' summation orders; both stay within 2 steps of lr.
            assert np.abs(mirrored[path] - initial[path]).max() <= 2e-3 * 1.001, path
            continue
        np.testing.assert_allclose(mirrored[path], value, atol=1e-6, rtol=0, err_msg=path)  # 0.1 % of a step
        assert np.abs(value - initial[path]).max() > 5e-4, path  # every other variable really moved


def test_grad_norm_ignores_steps_skipped_by_loss_scaling():
    # mixed_float16: a huge initial loss scale overflows the float16 gradients, so the LossScaleOptimizer
    # skips steps (halving the scale each time) until the scaled gradient fits. Those steps' norms are inf/NaN.
    with precision_policy("mixed_float16"):
        keras.utils.set_random_seed(0)
        model = SCI(stages=1)
        model.build()
        optimizer = keras.optimizers.LossScaleOptimizer(TorchAdam(), initial_scale=2.0**40)
        model.compile(optimizer=optimizer, run_eagerly=True)
        history = model.fit(tf.data.Dataset.from_tensor_slices(_images(0, 2, size=16)).batch(2).repeat(),
                            epochs=1, steps_per_epoch=30, verbose=0).history
    assert float(optimizer.dynamic_scale) < 2.0**40 / 1e6  # ≥ 20 skipped steps...
    assert 0 < int(optimizer.inner_optimizer.iterations.numpy()) < 30  # ...and some applied ones
    assert np.isfinite(history["grad_norm"][0]) and 0.0 < history["grad_norm"][0] < 1e3
    assert np.isfinite(history["loss"][0])


def test_llie_train_sci_writes_enhancer_weights(tmp_path, monkeypatch):
    from sci_tf.train_command import train
    from tests.fit_testing import assert_whole_epochs, record_steps
    from train import fit
    from train.cli import build_parser
    from train.io import write_image

    data = tmp_path / "low"
    for index, image in enumerate(_images(3, 2, size=20)):
        write_image(data / f"{index}.png", image)
    run_dir = tmp_path / "run"
    args = build_parser().parse_args(["train", "sci", "--data", str(data), "--epochs", "2", "--stages", "1",
                                      "--run-dir", str(run_dir), "--verbose", "0", "--seed", "1"])
    recorder = record_steps(monkeypatch, fit)
    model = train(args)
    assert_whole_epochs(recorder, model.optimizer, epochs=2, steps=2)  # 2 whole images, batch 1 (the original)
    enhancer = SCIEnhancer.from_weights(run_dir / "final.weights.h5")
    np.testing.assert_array_equal(enhancer.enhance.in_conv.kernel.numpy(), model.enhance.in_conv.kernel.numpy())
    # Trained from the original initialisation (the same seed gives the same initial weights): 4 Adam steps
    # of at most ~lr each.
    keras.utils.set_random_seed(1)
    initial = SCI(stages=1)
    initial.build()
    moved = np.abs(enhancer.enhance.in_conv.kernel.numpy() - initial.enhance.in_conv.kernel.numpy()).max()
    assert 0.5 * LEARNING_RATE < moved <= 4 * LEARNING_RATE * 1.01


def test_llie_train_sci_flag_mistakes_are_usage_errors_or_one_line(tmp_path, capsys):
    from tests.enhancer_testing import error_lines, run_llie
    from train.io import write_image

    data = tmp_path / "low"
    for index, size in enumerate((16, 20)):
        write_image(data / f"{index}.png", _images(index, 1, size=size)[0])
    for stages in ("0", "-1"):
        status, _, stderr = run_llie(capsys, "train", "sci", "--data", data, "--stages", stages)
        assert status == 2 and f"--stages: must be >= 1, got {stages}" in stderr and "Traceback" not in stderr
    status, _, stderr = run_llie(capsys, "train", "sci", "--data", data, "--batch-size", "2", "--run-dir",
                                 tmp_path / "run")
    assert status == 1 and error_lines(stderr, "train") == [stderr.strip()]
    assert stderr.strip().startswith(f"llie train: error: {data}: whole images (no patch size) can differ in size")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_sample_render_runs_the_enhance_network_only(monkeypatch):
    from sci_tf.train_command import render_reflectance

    keras.utils.set_random_seed(0)
    model = SCI(stages=3)
    model.build()
    x = tf.constant(_images(0, 2))
    stage0 = model(x, training=False)["rlist"][0]  # what the original saves: the first stage's reflectance

    def not_run(*args, **kwargs):
        raise AssertionError("the calibration network ran")

    monkeypatch.setattr(model.calibrate, "call", not_run)
    rendered = render_reflectance(model, x)
    np.testing.assert_allclose(rendered, stage0, atol=1e-6)
    np.testing.assert_allclose(rendered, model.enhancer()(x), atol=1e-6)
    assert float(tf.reduce_max(tf.abs(rendered - x))) > 1e-2  # brightened, not the input
