"""train.synthetic: the darkening model, its noise statistics, the LOL-layout writer and `llie synthesize`."""

import logging

import numpy as np
import pytest

from tests.enhancer_testing import error_lines, run_llie
from tests.image_folders import coded_image, real_low_images, save
from train.errors import DatasetLayoutError, ImageReadError
from train.folders import find_lol_pairs
from train.io import read_image
from train.synthetic import LowLightRanges, make_synthetic_lol, synthesize_low_light

NOISELESS = dict(photons=None, read_noise=(0.0, 0.0))


def test_noiseless_model_is_the_gamma_curve():
    x = np.linspace(0, 1, 2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    ranges = LowLightRanges(alpha=(0.95, 0.95), beta=(0.6, 0.6), gamma=(2.5, 2.5), **NOISELESS)
    y = synthesize_low_light(x, np.random.default_rng(0), ranges)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, 0.6 * (0.95 * x.astype(np.float64)) ** 2.5, rtol=1e-6, atol=1e-9)


def test_parameters_are_drawn_within_their_ranges():
    x = np.full((1, 1, 3), 0.8, np.float32)
    values = [synthesize_low_light(x, np.random.default_rng(seed), LowLightRanges(**NOISELESS))[0, 0, 0]
              for seed in range(200)]
    # y = β (α x)^γ: largest 1·0.8^1.5, smallest 0.5·(0.72)^5.
    assert 0.5 * 0.72 ** 5 <= min(values) and max(values) <= 0.8 ** 1.5
    assert max(values) - min(values) > 0.3


def test_poisson_gaussian_noise_statistics():
    x = np.full((300, 300, 3), 0.5, np.float32)
    ranges = LowLightRanges(alpha=(1, 1), beta=(0.8, 0.8), gamma=(2, 2), photons=(2000, 2000),
                            read_noise=(0.01, 0.01))
    y = synthesize_low_light(x, np.random.default_rng(1), ranges)
    clean = 0.8 * 0.25
    assert y.mean() == pytest.approx(clean, rel=2e-3)
    assert y.var() == pytest.approx(clean / 2000 + 0.01 ** 2, rel=0.03)  # shot variance y/photons + σ²
    shot_only = synthesize_low_light(x, np.random.default_rng(1), LowLightRanges(
        alpha=(1, 1), beta=(0.8, 0.8), gamma=(2, 2), photons=(2000, 2000), read_noise=(0, 0)))
    np.testing.assert_allclose(shot_only * 2000, np.round(shot_only * 2000), atol=2e-3)  # whole photon counts


def test_same_generator_state_same_image_and_clipped_range():
    x = real_low_images(1, (16, 24))[0].astype(np.float32) / 255.0 * 4.0  # brighter than [0,1] on purpose
    first = synthesize_low_light(x, np.random.default_rng(5))
    assert np.array_equal(first, synthesize_low_light(x, np.random.default_rng(5)))
    assert not np.array_equal(first, synthesize_low_light(x, np.random.default_rng(6)))
    assert 0.0 <= first.min() and first.max() <= 1.0


@pytest.mark.parametrize("bad", [dict(gamma=(2, 1)), dict(gamma=(0, 1)), dict(beta=(-0.1, 1)),
                                 dict(photons=(0, 10)), dict(read_noise=(-1, 0))])
def test_invalid_ranges(bad):
    with pytest.raises(ValueError, match=next(iter(bad)).replace("_", "-")):
        LowLightRanges(**bad)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    for index in range(8):
        save(folder / f"{index}.png", coded_image(index, (8, 12)))
    (folder / "notes.txt").write_text("ignored")
    return folder


def _arrays(root):
    return {path.relative_to(root).as_posix(): read_image(path) for path in sorted(root.rglob("*.png"))}


def test_lol_v1_layout_is_written_and_pairs_up(photos, tmp_path):
    result = make_synthetic_lol(photos, tmp_path / "out", seed=0, eval_fraction=0.25)
    assert len(result.train) == 6 and len(result.eval) == 2 and not result.skipped
    train, evaluation = find_lol_pairs(tmp_path / "out", "train"), find_lol_pairs(tmp_path / "out", "eval")
    assert sorted(low.name for low, _ in train) == sorted(result.train)
    assert sorted(low.name for low, _ in evaluation) == sorted(result.eval)
    for low, high in train + evaluation:
        assert low.parent.name == "low" and high.parent.name == "high"
        np.testing.assert_array_equal(read_image(high), read_image(photos / high.name))
        assert read_image(low).mean() < read_image(high).mean()


def test_deterministic_per_seed_and_per_file(photos, tmp_path):
    make_synthetic_lol(photos, tmp_path / "a", seed=3)
    make_synthetic_lol(photos, tmp_path / "b", seed=3)
    make_synthetic_lol(photos, tmp_path / "c", seed=4)
    a, b, c = _arrays(tmp_path / "a"), _arrays(tmp_path / "b"), _arrays(tmp_path / "c")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    low_a = {k.split("/")[-1]: v for k, v in a.items() if "/low/" in k}
    low_c = {k.split("/")[-1]: v for k, v in c.items() if "/low/" in k}
    assert not any(np.array_equal(low_a[name], low_c[name]) for name in low_a)
    # Adding a photo changes no other image's darkening (draws keyed by seed and file name).
    save(photos / "extra.png", coded_image(9, (8, 12)))
    make_synthetic_lol(photos, tmp_path / "d", seed=3, eval_fraction=0)
    low_d = {k.split("/")[-1]: v for k, v in _arrays(tmp_path / "d").items() if "/low/" in k}
    assert all(np.array_equal(low_a[name], low_d[name]) for name in low_a)


def test_lol_v2_layout(photos, tmp_path):
    make_synthetic_lol(photos, tmp_path / "v2", layout="v2", eval_fraction=0.5)
    assert sorted(p.relative_to(tmp_path / "v2").as_posix() for p in (tmp_path / "v2").glob("*/*")) == [
        "Test/Low", "Test/Normal", "Train/Low", "Train/Normal"]
    assert len(find_lol_pairs(tmp_path / "v2", "eval")) == 4


def test_bad_sources_and_destinations(photos, tmp_path, caplog):
    make_synthetic_lol(photos, tmp_path / "out")
    with pytest.raises(DatasetLayoutError, match=r"out/our485/low: already holds files"):
        make_synthetic_lol(photos, tmp_path / "out")
    (photos / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ImageReadError, match=r"photos/5\.png"):
        make_synthetic_lol(photos, tmp_path / "new")
    with caplog.at_level(logging.WARNING, logger="train.synthetic"):
        result = make_synthetic_lol(photos, tmp_path / "skipping", skip_bad=True)
    assert result.skipped == [photos / "5.png"] and len(result.train) + len(result.eval) == 7
    assert "photos/5.png" in caplog.text
    save(photos / "5.jpg", coded_image(5, (8, 12)))
    with pytest.raises(DatasetLayoutError, match=r"photos/5\.(png|jpg): .* same name stem"):
        make_synthetic_lol(photos, tmp_path / "dup")
    with pytest.raises(DatasetLayoutError, match="no such folder"):
        make_synthetic_lol(tmp_path / "nowhere", tmp_path / "x")


def test_llie_synthesize(photos, tmp_path, capsys):
    status, stdout, _ = run_llie(capsys, "synthesize", photos, tmp_path / "cli", "--seed", "2", "--gamma", "2", "2",
                                 "--no-shot-noise", "--eval-fraction", "0.125")
    assert status == 0
    assert f"wrote 7 training and 1 evaluation pairs to {(tmp_path / 'cli').resolve()}" in stdout
    low, high = find_lol_pairs(tmp_path / "cli", "eval")[0]
    assert low.name == high.name
    # γ fixed at 2, no shot noise: low = β·(α·x)² (0.5 ≤ β ≤ 1, 0.9 ≤ α ≤ 1) plus read noise (σ ≤ 0.01).
    squared = (read_image(high).astype(np.float64) ** 2).mean()
    assert 0.5 * 0.9 ** 2 * squared - 0.01 < read_image(low).mean() < squared + 0.01


def test_llie_synthesize_bad_inputs_are_one_line_errors(photos, tmp_path, capsys, caplog):
    run_llie(capsys, "synthesize", photos, tmp_path / "cli")
    status, stdout, stderr = run_llie(capsys, "synthesize", photos, tmp_path / "cli")
    assert status == 1 and stdout == ""
    assert error_lines(stderr, "synthesize") == [stderr.strip()]
    assert f"{tmp_path / 'cli' / 'our485' / 'low'}: already holds files" in stderr
    status, _, stderr = run_llie(capsys, "synthesize", tmp_path / "nowhere", tmp_path / "x")
    assert status == 1 and stderr.strip() == f"llie synthesize: error: {tmp_path / 'nowhere'}: no such folder"
    (photos / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    status, _, stderr = run_llie(capsys, "synthesize", photos, tmp_path / "broken")
    assert status == 1 and error_lines(stderr, "synthesize") == [stderr.strip()] and "5.png" in stderr
    # --skip-bad: the rest is written, the skipped file is named (a warning, as the training commands' --skip-bad
    # does), and the exit status says something failed.
    with caplog.at_level(logging.WARNING, logger="train.synthetic"):
        status, stdout, _ = run_llie(capsys, "synthesize", photos, tmp_path / "skipping", "--skip-bad")
    assert status == 1 and "skipped 1 unreadable image(s)" in stdout and "photos/5.png" in caplog.text
    assert len(find_lol_pairs(tmp_path / "skipping", "train")) + len(find_lol_pairs(tmp_path / "skipping", "eval")) \
        == 7


@pytest.mark.parametrize("flags, message", [
    (("--gamma", "3", "1"), "--gamma range must satisfy 0 <= LOW <= HIGH and LOW > 0, got 3 1"),
    (("--read-noise", "-1", "0"), "--read-noise range must satisfy 0 <= LOW <= HIGH, got -1 0"),
    (("--eval-fraction", "1"), "argument --eval-fraction: must be in [0, 1), got 1"),
])
def test_llie_synthesize_bad_flag_values_are_usage_errors(photos, tmp_path, capsys, flags, message):
    status, _, stderr = run_llie(capsys, "synthesize", photos, tmp_path / "out", *flags)
    assert status == 2 and error_lines(stderr, "synthesize") == [f"llie synthesize: error: {message}"]
    assert not (tmp_path / "out").exists()
