"""`llie enhance`: inputs (files, folders, globs), outputs (names, formats, rounding, no overwrite, atomic),
per-file errors, tiling, extras, the demo images, and SCI parity with the authors' own outputs."""

from __future__ import annotations

import hashlib
import io
import re

import keras
import numpy as np
from keras import ops
from PIL import Image

from tests.enhancer_testing import error_lines, run_llie, test_models  # noqa: F401 (fixture)
from tests.image_folders import save as _save
from tests.reference import REPO_ROOT
from train import registry
from train.enhance import collect_inputs, output_paths
from train.io import read_image

DEMO_DIR = REPO_ROOT / "train" / "demo"


def _image(seed, size=(24, 32)):
    return np.random.default_rng(seed).integers(0, 128, (*size, 3), dtype=np.uint8)


def _doubled(array):
    """What scale-test (preset double) writes for a uint8 input, rounding."""
    return np.round(np.clip(array.astype(np.float32) / 255 * 2, 0, 1) * 255).astype(np.uint8)


def _read_uint8(path):
    with Image.open(path) as opened:
        return np.asarray(opened.convert("RGB"))


# === Inputs and outputs ===


def test_files_folder_and_glob_with_a_corrupt_file(tmp_path, capsys, test_models):
    folder = tmp_path / "folder"
    arrays = {name: _image(i) for i, name in enumerate(["a.png", "b.png", "c.png", "d.png"])}
    _save(folder / "a.png", arrays["a.png"])
    _save(folder / "b.png", arrays["b.png"])
    _save(tmp_path / "globbed" / "c.png", arrays["c.png"])
    single = _save(tmp_path / "d.png", arrays["d.png"])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "out"

    status, stdout, stderr = run_llie(capsys, "enhance", folder, str(tmp_path / "globbed" / "*.png"), single,
                                      "-o", out, "--model", "scale-test")

    assert status == 1
    errors = error_lines(stderr, "enhance")
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png", "d.png"]  # no temp files left
    for name, array in arrays.items():
        written = _read_uint8(out / name)
        assert written.shape == array.shape
        np.testing.assert_array_equal(written, _doubled(array))
    assert re.search(rf"wrote 4 image\(s\) .* to {re.escape(str(out.resolve()))}; 1 failed", stdout)
    assert "|" not in stderr  # no progress bar when stderr is not a terminal


def test_collect_inputs_orders_dedupes_and_reports(tmp_path):
    for name in ["10.png", "2.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    files, problems = collect_inputs([str(tmp_path), str(tmp_path / "2.png"), str(tmp_path / "*.jpg"),
                                      str(tmp_path / "missing.png")])
    assert [p.name for p in files] == ["2.png", "10.png"]  # natural order, 2.png named twice enhanced once
    assert problems == [f"{tmp_path / '*.jpg'}: no image file matches this pattern",
                        f"{tmp_path / 'missing.png'}: no such file or folder"]


def test_same_stem_from_two_folders_is_not_overwritten(tmp_path, capsys, test_models):
    first = _save(tmp_path / "a" / "x.png", _image(1))
    second = _save(tmp_path / "b" / "x.jpg", _image(2))  # .jpg: its pixels are whatever the decoder gives
    out = tmp_path / "out"
    status, _, stderr = run_llie(capsys, "enhance", first, second, "-o", out, "--model", "scale-test")
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["x-2.png", "x.png"]
    np.testing.assert_array_equal(_read_uint8(out / "x.png"), _doubled(_image(1)))
    np.testing.assert_array_equal(_read_uint8(out / "x-2.png"), _doubled(_read_uint8(second)))
    assert f"note: {second}: same name as {first}, written as {out / 'x-2.png'}" in stderr


def test_output_names_skip_names_taken_by_other_inputs(tmp_path):
    inputs = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", tmp_path / "x-2.png", tmp_path / "X.jpg"]
    outputs, notes = output_paths(inputs, tmp_path / "o", ".png")
    assert [p.name for p in outputs] == ["x.png", "x-2.png", "x-2-2.png", "X-3.png"]
    assert len(notes) == 3


def test_an_input_is_never_overwritten(tmp_path, capsys, test_models):
    png = _save(tmp_path / "in.png", _image(3))
    jpg = _save(tmp_path / "other.jpg", _image(4))
    before = png.read_bytes()
    status, _, stderr = run_llie(capsys, "enhance", png, jpg, "-o", tmp_path, "--model", "scale-test")
    assert status == 1
    errors = error_lines(stderr, "enhance")
    assert len(errors) == 1 and "in.png: refusing to overwrite an input file" in errors[0]
    assert png.read_bytes() == before
    assert (tmp_path / "other.png").is_file()  # a different name in the same folder is fine
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_extra_flag_preset_weights_rounding_and_format(tmp_path, capsys, test_models):
    source = _save(tmp_path / "in" / "p.png", np.full((16, 16, 3), 3, np.uint8))
    cases = {  # flags → expected grey level of 3/255 × factor
        ("--boost", "1.2"): round(3 * 2.4),            # 7.2 → 7
        ("--preset", "triple"): 9,
        ("--preset", "double", "--boost", "0.6", "--rounding", "truncate"): 3,  # 3.6 truncated
        ("--preset", "double", "--boost", "0.6"): 4,   # 3.6 rounded
    }
    for flags, expected in cases.items():
        out = tmp_path / "_".join(flags)
        status, _, _ = run_llie(capsys, "enhance", source, "-o", out, "--model", "scale-test", *flags)
        assert status == 0
        assert np.all(_read_uint8(out / "p.png") == expected), flags
    weights = tmp_path / "five.txt"
    weights.write_text("5")
    run_llie(capsys, "enhance", source, "-o", tmp_path / "w", "--model", "scale-test", "--weights", weights)
    assert np.all(_read_uint8(tmp_path / "w" / "p.png") == 15)
    status, _, _ = run_llie(capsys, "enhance", source, "-o", tmp_path / "j", "--model", "scale-test",
                            "--format", "jpg")
    assert status == 0
    with Image.open(tmp_path / "j" / "p.jpg") as opened:
        assert opened.format == "JPEG" and opened.size == (16, 16)


def test_tiled_enhancement_matches_whole_image(tmp_path, capsys, test_models):
    source = _save(tmp_path / "big.png", _image(5, size=(50, 70)))
    run_llie(capsys, "enhance", source, "-o", tmp_path / "whole", "--model", "scale-test")
    status, _, _ = run_llie(capsys, "enhance", source, "-o", tmp_path / "tiled", "--model", "scale-test",
                            "--tile", "24", "--tile-overlap", "4")
    assert status == 0
    np.testing.assert_array_equal(_read_uint8(tmp_path / "tiled" / "big.png"),
                                  _read_uint8(tmp_path / "whole" / "big.png"))


class BlockMean(keras.Model):
    """Each 2×2 block (from the top-left corner) replaced by its mean: the output depends on the pooling grid."""

    def call(self, image, training=None):
        pooled = ops.average_pool(image, 2, strides=2, padding="same")
        up = ops.repeat(ops.repeat(pooled, 2, axis=1), 2, axis=2)
        return up[:, :ops.shape(image)[1], :ops.shape(image)[2]]


BLOCK_SPEC = registry.ModelSpec(name="block-test", summary="2×2 block means", tile_alignment=2, tile_overlap=2,
                                build_enhancer=lambda preset=None, weights=None: BlockMean())


def test_tiling_uses_the_models_grid_and_default_overlap(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(registry._REGISTERED, BLOCK_SPEC.name, BLOCK_SPEC)
    source = _save(tmp_path / "odd.png", _image(8, size=(25, 31)))
    run_llie(capsys, "enhance", source, "-o", tmp_path / "whole", "--model", "block-test")
    whole = _read_uint8(tmp_path / "whole" / "odd.png")
    # --tile 8: the last tile of 25 rows starts at 16 (on the 2-px grid), not at 25 − 8 = 17; overlap 2 (the
    # spec's default) covers the blocks' reach. Off the grid, the last rows would average other pixel pairs.
    status, _, _ = run_llie(capsys, "enhance", source, "-o", tmp_path / "tiled", "--model", "block-test",
                            "--tile", "8")
    assert status == 0
    np.testing.assert_array_equal(_read_uint8(tmp_path / "tiled" / "odd.png"), whole)
    status, _, stderr = run_llie(capsys, "enhance", source, "-o", tmp_path / "o", "--model", "block-test",
                                 "--tile", "5")  # 5 → 4 on the grid: 4 − 2·2 leaves no step
    assert status == 1
    assert error_lines(stderr, "enhance") == [
        "llie enhance: error: --tile 5 --tile-overlap 2 (the default of 'block-test'): tile rounded down to a "
        "multiple of 2 (4) must be ≥ 2·overlap + 2 = 2·2 + 2 = 6"]
    # The rule is on the rounded tile: 7 → 6 = 2·2 + 2 is accepted.
    status, _, _ = run_llie(capsys, "enhance", source, "-o", tmp_path / "seven", "--model", "block-test",
                            "--tile", "7")
    assert status == 0
    np.testing.assert_array_equal(_read_uint8(tmp_path / "seven" / "odd.png"), whole)
    status, _, stderr = run_llie(capsys, "enhance", source, "-o", tmp_path / "o", "--model", "block-test",
                                 "--tile", "8", "--tile-overlap", "-1")
    assert status == 1
    assert error_lines(stderr, "enhance") == ["llie enhance: error: --tile 8 --tile-overlap -1: overlap must be ≥ 0, "
                                              "got -1"]


def test_progress_bar_on_a_terminal_unless_quiet(tmp_path, capsys, monkeypatch, test_models):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    source = _save(tmp_path / "p.png", _image(6))
    for quiet, shown in ((False, True), (True, False)):
        terminal = Terminal()
        monkeypatch.setattr("sys.stderr", terminal)
        run_llie(capsys, "enhance", source, "-o", tmp_path / "o", "--model", "scale-test",
                 *(["--quiet"] if quiet else []))
        assert ("0/1 [" in terminal.getvalue()) is shown


def test_usage_errors_are_one_line(tmp_path, capsys, test_models):
    source = _save(tmp_path / "p.png", _image(7))
    cases = {
        ("--model", "no-such-model"): "unknown model 'no-such-model' (known: ",
        ("--model", "scale-test", "--preset", "huge"): "has no preset 'huge' (presets: double, triple)",
        ("--model", "plain-test", "--boost", "2"): "model 'plain-test' takes no --boost",
        ("--model", "scale-test", "--tile", "8"): "--tile 8 --tile-overlap 32 (the default of 'scale-test'): "
                                                  "tile (8) must be ≥ 2·overlap + 1 = 2·32 + 1 = 65",
    }
    for flags, message in cases.items():
        status, stdout, stderr = run_llie(capsys, "enhance", source, "-o", tmp_path / "o", *flags)
        assert status == 1 and stdout == ""
        assert stderr.count("\n") == 1 and message in error_lines(stderr, "enhance")[0], flags
    status, _, stderr = run_llie(capsys, "enhance", "-o", tmp_path / "o", "--model", "scale-test")
    assert status == 1 and "no input images" in stderr
    assert not (tmp_path / "o").exists()


# === Demo images ===


def test_demo_images_are_small_dark_and_documented():
    pngs = sorted(DEMO_DIR.glob("*.png"))
    assert 2 <= len(pngs) <= 3
    provenance = (DEMO_DIR / "PROVENANCE.md").read_text()
    for path in pngs:
        image = read_image(path)
        assert image.shape == (300, 400, 3)
        assert image.mean() < 0.15  # low-light
        assert hashlib.sha256(path.read_bytes()).hexdigest() in provenance  # the recipe's output, unmodified


def test_demo_writes_one_output_per_demo_image(tmp_path, capsys, test_models):
    status, stdout, _ = run_llie(capsys, "enhance", "--demo", "-o", tmp_path, "--model", "scale-test")
    assert status == 0
    names = sorted(p.name for p in DEMO_DIR.glob("*.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    for name in names:
        np.testing.assert_array_equal(_read_uint8(tmp_path / name), _doubled(_read_uint8(DEMO_DIR / name)))
    assert f"wrote {len(names)} demo image(s)" in stdout and str(tmp_path.resolve()) in stdout


# === SCI, the default model ===


def test_sci_demo(tmp_path, capsys):
    """`llie enhance --demo` writes every bundled sample, enhanced by SCI's medium preset (±1 grey level of the
    Keras model; the authors' outputs are checked in tests/test_sci_presets.py)."""
    from sci_tf import SCIEnhancer

    status, stdout, _ = run_llie(capsys, "enhance", "--demo", "-o", tmp_path)
    assert status == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in DEMO_DIR.glob("*.png"))
    assert "sci (preset medium" in stdout
    enhancer = SCIEnhancer.from_preset("medium")
    for sample in DEMO_DIR.glob("*.png"):
        expected = np.round(enhancer(_read_uint8(sample)[None] / np.float32(255)).numpy()[0] * 255)
        assert np.abs(_read_uint8(tmp_path / sample.name).astype(int) - expected).max() <= 1, sample.name
        assert np.abs(_read_uint8(tmp_path / sample.name).astype(int) - _read_uint8(sample)).mean() > 30  # brighter
