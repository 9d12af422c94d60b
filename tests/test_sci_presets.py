"""SCI presets against the authors' own outputs: the committed results/ PNGs and test.py runs (e2e/), with the
unfused SCIEnhancer (the port itself) and through `llie enhance` (the fused inference form it runs)."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from sci_tf.enhancer import SCIEnhancer
from sci_tf.presets import DEFAULT_PRESET, PRESETS, preset_weights_path
from tests.reference import reference_path, shared_data_path
from train import registry
from train.cli import main
from train.errors import NotAvailableError
from train.io import read_image, to_uint8


@pytest.fixture(scope="module")
def enhance_fns():
    """preset name → tf.function image (H, W, 3) → enhanced uint8-ready float image; traced once per size."""
    fns = {}
    for name in PRESETS:
        model = SCIEnhancer.from_preset(name)
        fns[name] = tf.function(lambda image, model=model: model(image[None])[0], reduce_retracing=True)
    return fns


def _uint8(path: Path) -> np.ndarray:
    """An 8-bit PNG's values as int16 (read_image gives them /255)."""
    return np.asarray(read_image(path) * 255.0 + 0.5, np.int16)


def _diff_stats(fn, input_path: Path, expected_path: Path) -> tuple[int, int]:
    got = to_uint8(fn(tf.constant(read_image(input_path))).numpy(), "truncate").astype(np.int16)
    expected = _uint8(expected_path)
    assert got.shape == expected.shape, input_path
    diff = np.abs(got - expected)
    return int(diff.max()), int(np.count_nonzero(diff))


@pytest.mark.parametrize("level", ["easy", "medium", "difficult"])
def test_reproduces_the_authors_committed_outputs(enhance_fns, level):
    # PNG inputs only (JPEG decoding differs between libjpeg builds, see shared/data/README.md). The authors ran
    # on a GPU; we assert every pixel within ±1 grey level of their PNG (truncating uint8 conversion, as test.py).
    inputs = sorted(shared_data_path("sci_test").joinpath(level).glob("*.png"))
    assert inputs, level
    for path in inputs:
        expected = shared_data_path("sci_official_outputs") / level / path.name
        max_diff, _ = _diff_stats(enhance_fns[level], path, expected)
        assert max_diff <= 1, path.name


def test_reproduces_official_test_py_runs(enhance_fns):
    # Every e2e/<preset> folder there is (public: medium and difficult), each with test.py's outputs.
    folders = sorted(path for path in reference_path("sci", "e2e").iterdir() if path.is_dir())
    assert folders and {folder.name for folder in folders} <= set(PRESETS), folders
    for folder in folders:
        outputs = sorted(folder.glob("*.png"))
        assert outputs, folder
        for expected in outputs:
            source = shared_data_path("lol_eval15_lowonly/low_600x400") / expected.name
            max_diff, _ = _diff_stats(enhance_fns[folder.name], source, expected)
            assert max_diff <= 1, f"{folder.name}/{expected.name}"


def _cli_cases(level: str) -> list[tuple[Path, Path]]:
    """(input PNG, the authors' output for it): every PNG of sci_test/<level> with its committed result, and the
    LOL inputs of e2e/<level> (the official test.py run) where that folder exists."""
    cases = [(path, shared_data_path("sci_official_outputs") / level / path.name)
             for path in sorted(shared_data_path("sci_test").joinpath(level).glob("*.png"))]
    e2e = reference_path("sci", "e2e") / level
    if e2e.is_dir():
        cases += [(shared_data_path("lol_eval15_lowonly/low_600x400") / expected.name, expected)
                  for expected in sorted(e2e.glob("*.png"))]
    return cases


@pytest.mark.parametrize("level", ["easy", "medium", "difficult"])
def test_llie_enhance_reproduces_the_authors_outputs(tmp_path, level):
    # What a user runs (the CLI's default inference path: the fused enhancer), once per preset on all its inputs.
    # The authors' test.py truncates to uint8, hence --rounding truncate; ±1 grey level (their GPU, our CPU).
    cases = _cli_cases(level)
    assert len({source.stem for source, _ in cases}) == len(cases), "two inputs would write the same output"
    argv = ["enhance", *[str(source) for source, _ in cases], "-o", str(tmp_path), "--model", "sci",
            "--preset", level, "--rounding", "truncate", "--quiet"]
    assert main(argv) == 0
    assert len(list(tmp_path.iterdir())) == len(cases)
    for source, expected in cases:
        got = _uint8(tmp_path / f"{source.stem}.png")
        want = _uint8(expected)
        assert got.shape == want.shape, source
        assert np.abs(got - want).max() <= 1, f"{source} vs {expected}"


def test_registry_entry_builds_the_fused_default_preset_and_rejects_unknown_ones():
    spec = registry.get("sci")
    assert spec.presets == ("easy", "medium", "difficult") and spec.default_preset == DEFAULT_PRESET == "medium"
    default = spec.build_enhancer()
    medium = SCIEnhancer.from_preset("medium")
    easy = SCIEnhancer.from_preset("easy")
    assert default.fused and not medium.fused  # llie enhance / export run the BatchNorm-folded form
    x = np.random.default_rng(0).uniform(0.0, 0.4, (2, 31, 45, 3)).astype(np.float32)
    np.testing.assert_allclose(default(x), medium(x), atol=1e-6, rtol=0)
    assert np.abs(np.asarray(default(x)) - np.asarray(easy(x))).max() > 1e-2
    with pytest.raises(NotAvailableError, match="'bright'"):
        spec.build_enhancer(preset="bright")
    # An original state dict given as --weights is converted on the fly (and fused), as is a .weights.h5.
    from_original = spec.build_enhancer(weights=reference_path("sci", "weights/medium_state_dict.npz"))
    from_file = spec.build_enhancer(weights=preset_weights_path("medium"))
    for enhancer in (from_original, from_file):
        assert enhancer.fused
        np.testing.assert_array_equal(enhancer(x), default(x))
