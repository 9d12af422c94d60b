"""train.io: every Pillow mode → float32 RGB [0,1], EXIF orientation, clear errors, atomic writes."""

import os
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageFile

from train.errors import ImageReadError, ImageWriteError
from train.io import IMAGE_SUFFIXES, atomic_output, is_image_path, read_image, read_image_size, to_uint8, write_image

RGB = np.array([[[0, 0, 0], [255, 128, 1]], [[10, 20, 30], [200, 100, 50]], [[1, 2, 3], [4, 5, 6]]], np.uint8)


def _save(path, array, mode=None, **options):
    Image.fromarray(array, mode).save(path, **options) if mode else Image.fromarray(array).save(path, **options)
    return path


def _check_layout(image, shape):
    assert image.dtype == np.float32 and image.shape == shape
    assert image.min() >= 0.0 and image.max() <= 1.0


# === Reading: modes ===


def test_rgb_png_values_are_exact(tmp_path):
    image = read_image(_save(tmp_path / "a.png", RGB))
    _check_layout(image, (3, 2, 3))
    np.testing.assert_array_equal(image, RGB.astype(np.float32) / 255.0)


def test_grayscale_is_repeated_over_channels(tmp_path):
    grey = np.array([[0, 17], [128, 255]], np.uint8)
    image = read_image(_save(tmp_path / "g.png", grey))
    _check_layout(image, (2, 2, 3))
    np.testing.assert_array_equal(image, np.repeat(grey[..., None] / np.float32(255.0), 3, axis=-1))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_black(tmp_path, mode):
    alpha = np.array([[255, 0], [128, 64]], np.uint8)
    colour = np.full((2, 2, 3), 200, np.uint8)
    if mode == "RGBA":
        Image.fromarray(np.dstack([colour, alpha]), "RGBA").save(tmp_path / "a.png")
    else:
        Image.fromarray(np.dstack([colour[..., 0], alpha]), "LA").save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    _check_layout(image, (2, 2, 3))
    # Pillow's alpha_composite on black: round(200 * a / 255) per channel.
    want = np.round(200 * alpha.astype(np.float64) / 255.0) / 255.0
    np.testing.assert_allclose(image, np.repeat(want[..., None], 3, -1), atol=1.5 / 255)
    assert image[0, 1].max() == 0.0 and image[0, 0].min() == np.float32(200 / 255)


def test_palette_without_transparency(tmp_path):
    palette_image = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette_image.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(image, np.asarray(palette_image.convert("RGB"), np.float32) / 255.0)
    np.testing.assert_array_equal(image, RGB.astype(np.float32) / 255.0)  # 6 colours fit an 8-entry palette


def test_palette_transparent_entry_becomes_black(tmp_path):
    indices = np.array([[0, 1], [1, 0]], np.uint8)
    palette_image = Image.fromarray(indices, "P")
    palette_image.putpalette([250, 10, 10, 20, 200, 30] + [0] * 762)
    palette_image.save(tmp_path / "t.png", transparency=0)
    image = read_image(tmp_path / "t.png")
    np.testing.assert_array_equal(image[0, 0], [0, 0, 0])  # index 0 transparent
    np.testing.assert_array_equal(image[0, 1], np.array([20, 200, 30], np.float32) / 255.0)


def test_16_bit_grey_divides_by_65535(tmp_path):
    values = np.array([[0, 1000], [40000, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as opened:
        assert opened.mode.startswith("I")
    image = read_image(tmp_path / "d.png")
    _check_layout(image, (2, 2, 3))
    np.testing.assert_allclose(image[..., 0], values / 65535.0, rtol=1e-6)
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_dark_16_bit_image_is_not_mistaken_for_8_bit(tmp_path):
    values = np.array([[0, 100], [200, 255]], np.uint16)  # all ≤ 255, still 16-bit data
    Image.fromarray(values).save(tmp_path / "dark.png")
    np.testing.assert_allclose(read_image(tmp_path / "dark.png")[..., 1], values / 65535.0, rtol=1e-6)


def _png16(path, values, orientation=None):
    """`values` (H, W, C) uint16 as a 16-bit PNG (Pillow cannot write 16-bit colour), with an eXIf chunk
    holding `orientation` if given."""
    data = tf.io.encode_png(tf.constant(values, tf.uint16)).numpy()
    assert data[24] == 16
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        body = exif.tobytes()[len(b"Exif\0\0"):]
        chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
        data = data[:33] + chunk + data[33:]  # right after the 8-byte signature and the 25-byte IHDR chunk
    path.write_bytes(data)
    return path


def test_dark_16_bit_rgb_png_keeps_full_precision(tmp_path):
    # Pillow 13 opens this as 8-bit "RGB": 300 → 1/255 and every value < 256 → 0, a black image.
    values = np.array([[[0, 1, 255], [256, 300, 1000]], [[4095, 65534, 65535], [7, 77, 777]]], np.uint16)
    image = read_image(_png16(tmp_path / "dark16.png", values))
    _check_layout(image, (2, 2, 3))
    np.testing.assert_array_equal(image, values.astype(np.float32) / np.float32(65535.0))


def test_16_bit_colour_png_is_decoded_once(tmp_path, monkeypatch):
    """Its pixels are decoded by TF alone (Pillow's 8-bit decode of the same file would be wasted work); an
    8-bit PNG still goes through Pillow."""
    from PIL import PngImagePlugin

    decodes = []
    pillow_load = PngImagePlugin.PngImageFile.load
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: decodes.append(1) or pillow_load(self))
    values = np.arange(2 * 3 * 3, dtype=np.uint16).reshape(2, 3, 3) * 3000
    image = read_image(_png16(tmp_path / "rgb16.png", values, orientation=6))
    assert decodes == []
    np.testing.assert_array_equal(image, np.rot90(values, -1).astype(np.float32) / np.float32(65535.0))
    read_image(_save(tmp_path / "rgb8.png", RGB))
    assert decodes  # the monkeypatch does see Pillow's decoding


def test_16_bit_png_alpha_is_composited_on_black(tmp_path):
    rgba = np.array([[[300, 600, 900, 65535], [65535, 65535, 65535, 0]],
                     [[1000, 2000, 3000, 32768], [10, 20, 30, 65535]]], np.uint16)
    image = read_image(_png16(tmp_path / "rgba16.png", rgba))
    want = rgba[..., :3].astype(np.float32) / 65535.0 * (rgba[..., 3:].astype(np.float32) / 65535.0)
    np.testing.assert_allclose(image, want, rtol=1e-6, atol=0)
    grey_alpha = rgba[..., [0, 3]]
    image = read_image(_png16(tmp_path / "la16.png", grey_alpha))
    want = grey_alpha[..., :1].astype(np.float32) / 65535.0 * (grey_alpha[..., 1:].astype(np.float32) / 65535.0)
    np.testing.assert_allclose(image, np.repeat(want, 3, axis=-1), rtol=1e-6, atol=0)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16_bit_png_exif_orientation_matches_the_8_bit_path(tmp_path, orientation):
    eight = np.random.default_rng(orientation).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(eight).save(tmp_path / "8.png", exif=exif)
    # v·257 / 65535 = v / 255 exactly: the two reads must agree bit for bit, orientation included.
    image = read_image(_png16(tmp_path / "16.png", eight.astype(np.uint16) * 257, orientation))
    np.testing.assert_array_equal(image, read_image(tmp_path / "8.png"))
    assert read_image_size(tmp_path / "16.png") == image.shape[:2]
    assert image.shape[:2] == ((5, 3) if orientation >= 5 else (3, 5))


def test_truncated_16_bit_png_is_named(tmp_path):
    data = _png16(tmp_path / "full.png", np.random.default_rng(0).integers(0, 65536, (32, 32, 3), np.uint16)
                  ).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png: corrupt or truncated"):
        read_image(tmp_path / "cut.png")


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    cmyk = Image.new("CMYK", (4, 3), (0, 255, 255, 0))  # pure red
    cmyk.save(tmp_path / "c.jpg", quality=100)
    image = read_image(tmp_path / "c.jpg")
    _check_layout(image, (3, 4, 3))
    np.testing.assert_allclose(image.mean(axis=(0, 1)), [1.0, 0.0, 0.0], atol=0.03)


@pytest.mark.parametrize("orientation, transform", [
    (3, lambda a: np.rot90(a, 2)),  # rotate 180
    (6, lambda a: np.rot90(a, -1)),  # rotate 90 clockwise (sides swap)
    (8, lambda a: np.rot90(a, 1)),  # rotate 90 counter-clockwise
])
def test_exif_orientation_is_applied(tmp_path, orientation, transform):
    # Blocks of 8x8 pixels survive JPEG well enough to tell the orientations apart.
    blocks = np.kron(np.array([[0, 250, 0], [120, 0, 0]], np.uint8), np.ones((8, 8), np.uint8))
    array = np.repeat(blocks[..., None], 3, -1)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(tmp_path / "o.jpg", exif=exif, quality=100)
    image = read_image(tmp_path / "o.jpg")
    want = transform(array).astype(np.float32) / 255.0
    assert image.shape == want.shape
    np.testing.assert_allclose(image, want, atol=12 / 255)
    assert read_image_size(tmp_path / "o.jpg") == image.shape[:2]


# === Reading: errors ===


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageReadError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")


def test_non_image_with_image_suffix_is_named(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageReadError, match=r"notes\.png: not an image"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(ImageReadError, match=r"notes\.png"):
        read_image_size(tmp_path / "notes.png")


def test_corrupt_and_truncated_files_are_named(tmp_path):
    data = (_save(tmp_path / "good.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
            ).read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    corrupt[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    (tmp_path / "corrupt.png").write_bytes(bytes(corrupt))
    assert read_image_size(tmp_path / "truncated.png") == (64, 64)  # the header alone is fine
    for name in ("truncated.png", "corrupt.png"):
        with pytest.raises(ImageReadError, match=rf"{name}: corrupt or truncated"):
            read_image(tmp_path / name)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    _save(tmp_path / "big.png", np.zeros((20, 20, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 400 px: > 2x the limit → Pillow's error
    with pytest.raises(ImageReadError, match=r"big\.png: image too large"):
        read_image(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # between 1x and 2x → Pillow only warns; still refused
    with pytest.raises(ImageReadError, match=r"big\.png: image too large"):
        read_image(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match=r"big\.png: image too large"):
        read_image_size(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # exactly at the limit: allowed, as in Pillow
    assert read_image(tmp_path / "big.png").shape == (20, 20, 3)


def test_concurrent_reads_leave_the_warning_filters_alone(tmp_path, monkeypatch):
    # tf.data reads files in parallel threads. A guard that swaps the process-wide warning filters
    # (catch_warnings) per read leaks them when two reads overlap as A enters, B enters, A leaves, B leaves:
    # B restores the filters A had set. That interleaving is forced here through a blocking decode.
    first, second = (_save(tmp_path / name, RGB) for name in ("a.png", "b.png"))
    original_load = ImageFile.ImageFile.load
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()

    def interleaved_load(self):
        if os.path.basename(self.filename) == "a.png":
            a_inside.set()
            assert b_inside.wait(30)
        else:
            b_inside.set()
            assert a_done.wait(30)
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", interleaved_load)
    before = list(warnings.filters)
    results = {}

    def read(path):
        results[path.name] = read_image(path)
        if path.name == "a.png":
            a_done.set()

    threads = [threading.Thread(target=read, args=(first,))]
    threads[0].start()
    assert a_inside.wait(30)
    threads.append(threading.Thread(target=read, args=(second,)))
    threads[1].start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == ["a.png", "b.png"]
    np.testing.assert_array_equal(results["b.png"], RGB.astype(np.float32) / 255.0)
    assert warnings.filters == before


def test_suffixes():
    assert is_image_path("a/B.PNG") and is_image_path("x.jpeg") and ".tif" in IMAGE_SUFFIXES
    assert not is_image_path("README.txt") and not is_image_path(".DS_Store")


# === Writing ===


def test_png_round_trip_is_exact(tmp_path):
    image = RGB.astype(np.float32) / 255.0
    write_image(tmp_path / "out.png", image)
    np.testing.assert_array_equal(read_image(tmp_path / "out.png"), image)
    assert os.listdir(tmp_path) == ["out.png"]  # no temporary file left


def test_format_is_chosen_by_suffix(tmp_path):
    image = np.full((8, 8, 3), 0.5, np.float32)
    for name, fmt in (("a.png", "PNG"), ("b.JPG", "JPEG"), ("c.jpeg", "JPEG")):
        write_image(tmp_path / name, image)
        with Image.open(tmp_path / name) as opened:
            assert opened.format == fmt
    with pytest.raises(ImageWriteError, match=r"d\.bmp"):
        write_image(tmp_path / "d.bmp", image)


def test_truncate_versus_round():
    values = np.array([0.0, 0.5 / 255, 1.6 / 255, 254.5 / 255, 1.0, 1.2, -0.1], np.float32)
    np.testing.assert_array_equal(to_uint8(values, "truncate"), [0, 0, 1, 254, 255, 255, 0])
    np.testing.assert_array_equal(to_uint8(values, "round"), [0, 0, 2, 254, 255, 255, 0])  # 0.5 → even
    with pytest.raises(ValueError):
        to_uint8(values, "floor")


def test_write_rounding_option(tmp_path):
    image = np.full((1, 1, 3), 1.6 / 255, np.float32)
    write_image(tmp_path / "t.png", image, rounding="truncate")
    write_image(tmp_path / "r.png", image)
    assert read_image(tmp_path / "t.png")[0, 0, 0] * 255 == pytest.approx(1.0)
    assert read_image(tmp_path / "r.png")[0, 0, 0] * 255 == pytest.approx(2.0)


def test_failed_save_leaves_existing_target_untouched(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    write_image(target, np.zeros((4, 4, 3), np.float32))
    before = target.read_bytes()

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"half an image")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(ImageWriteError, match=r"keep\.png: cannot write \(disk full\)"):
        write_image(target, np.ones((4, 4, 3), np.float32))
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.png"]


def test_refuses_to_overwrite_a_protected_input(tmp_path):
    source = _save(tmp_path / "in.png", RGB)
    before = source.read_bytes()
    with pytest.raises(ImageWriteError, match=r"in\.png: refusing to overwrite"):
        write_image(tmp_path / "sub" / ".." / "in.png", np.zeros((2, 2, 3)), protect=(source,))
    assert source.read_bytes() == before


def test_written_file_gets_ordinary_permissions(tmp_path, umask_027):
    write_image(tmp_path / "p.png", np.zeros((2, 2, 3)))
    assert os.stat(tmp_path / "p.png").st_mode & 0o777 == 0o666 & ~umask_027 == 0o640


def test_atomic_output_replaces_a_folder_whole_and_leaves_nothing_on_failure(tmp_path, umask_027):
    target = tmp_path / "out" / "model"
    for version in ("old", "new"):
        with atomic_output(target) as tmp:
            tmp.mkdir()
            (tmp / f"{version}.txt").write_text(version)
    assert os.listdir(target) == ["new.txt"] and os.listdir(target.parent) == ["model"]
    assert os.stat(target).st_mode & 0o777 == 0o750
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_output(target) as tmp:
            tmp.mkdir()
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("crash")
    assert os.listdir(target) == ["new.txt"] and os.listdir(target.parent) == ["model"]


def test_atomic_output_puts_the_old_folder_back_when_the_new_one_cannot_move_in(tmp_path, monkeypatch):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real_replace, calls = os.replace, []

    def second_rename_fails(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="disk full"):
        with atomic_output(target) as tmp:
            tmp.mkdir()
            (tmp / "new.txt").write_text("new")
    assert len(calls) == 3 and calls[2][1] == "model"  # old aside, new in (fails), old back
    assert os.listdir(target) == ["old.txt"] and os.listdir(tmp_path) == ["model"]


def test_grey_and_single_channel_shapes(tmp_path):
    write_image(tmp_path / "g.png", np.full((3, 4, 1), 1.0, np.float32))
    image = read_image(tmp_path / "g.png")
    _check_layout(image, (3, 4, 3))
    assert image.min() == 1.0
    with pytest.raises(ImageWriteError, match=r"x\.png: expected"):
        write_image(tmp_path / "x.png", np.zeros((3, 4, 2)))
