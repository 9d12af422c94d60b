"""Image IO: any image Pillow reads → float32 RGB [0,1] (H, W, 3); float32 [0,1] → PNG/JPEG written atomically.

16-bit colour PNGs are decoded at full precision with `tf.io.decode_png` (Pillow 13 reduces them to 8 bits).
`atomic_output` is the project's one way to write a file or folder atomically (images, weights, exports).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import ExifTags, Image, ImageOps

from train.errors import ImageReadError, ImageWriteError

# Decompression bombs: Pillow warns above Image.MAX_IMAGE_PIXELS (~89 Mpx) and errors above twice that; we refuse
# both with an ImageReadError, checking the count ourselves (`warnings.catch_warnings` is not thread-safe, and
# tf.data reads files in parallel threads). Pillow's warning is then only a second message about a file we
# refuse anyway, so it is silenced (process-wide: a filter cannot be scoped to our calls).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
# PNG IHDR colour types read with tf.io.decode_png at 16 bits → channels asked for (grey+alpha comes as RGBA).
_PNG16_CHANNELS = {2: 3, 4: 4, 6: 4}
# EXIF orientation → the numpy transform of an (H, W, C) array that ImageOps.exif_transpose applies.
_ORIENTATIONS = {
    2: lambda a: a[:, ::-1],  # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],  # ROTATE_180
    4: lambda a: a[::-1],  # FLIP_TOP_BOTTOM
    5: lambda a: a.transpose(1, 0, 2),  # TRANSPOSE
    6: lambda a: np.rot90(a, -1),  # ROTATE_270 (90° clockwise)
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # TRANSVERSE
    8: lambda a: np.rot90(a, 1),  # ROTATE_90 (counter-clockwise)
}



def is_image_path(path: str | os.PathLike) -> bool:
    """Whether the file name has an image suffix this project reads (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Pillow image of any mode → float32 RGB [0,1]; 16-bit greyscale keeps its precision."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / scale, 0.0, 1.0).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=-1)
    if img.mode == "F":
        grey = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on black: transparent areas of a low-light photo are treated as dark, not white.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _check_pixel_count(path: Path, size: tuple[int, int]) -> None:
    """Refuse what Pillow only warns about: more than `Image.MAX_IMAGE_PIXELS` pixels (read at call time)."""
    limit = Image.MAX_IMAGE_PIXELS
    pixels = max(1, size[0]) * max(1, size[1])
    if limit is not None and pixels > limit:
        raise ImageReadError(f"{path}: image too large to decode safely (Image size ({pixels} pixels) exceeds "
                             f"limit of {limit} pixels, could be decompression bomb DOS attack.)")


def _png16_colour_type(path: Path) -> int | None:
    """The IHDR colour type of a 16-bit colour PNG (2 RGB, 4 grey+alpha, 6 RGBA); None for any other file."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    if header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR" or header[24] != 16:
        return None
    return header[25] if header[25] in _PNG16_CHANNELS else None


def _read_png16(path: Path, colour_type: int, orientation: int) -> np.ndarray:
    """A 16-bit colour PNG at full precision → float32 RGB [0,1]; alpha composited on black, EXIF orientation
    applied (as `_to_rgb_array` and `ImageOps.exif_transpose` do for 8-bit images)."""
    import tensorflow as tf  # only here: train.io stays importable without loading TensorFlow

    try:
        decoded = tf.io.decode_png(path.read_bytes(), channels=_PNG16_CHANNELS[colour_type], dtype=tf.uint16)
    except tf.errors.InvalidArgumentError as err:
        raise ImageReadError(f"{path}: corrupt or truncated image ({err.message})") from err
    pixels = decoded.numpy().astype(np.float32) / 65535.0
    rgb = pixels[..., :3] * pixels[..., 3:] if pixels.shape[-1] == 4 else pixels
    return np.ascontiguousarray(_ORIENTATIONS.get(orientation, lambda a: a)(rgb))


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 when absent) from what Pillow read with the header, decoding no pixels: the
    base class getexif (PngImageFile.getexif would decode the whole image to look for an eXIf chunk after it)."""
    return Image.Image.getexif(img).get(ExifTags.Base.Orientation, 1)


@contextlib.contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """Open `path` with Pillow, turning every way it can fail into an `ImageReadError` naming the file."""
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        with Image.open(path) as img:
            _check_pixel_count(path, img.size)
            yield img
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"{path}: image too large to decode safely ({err})") from err
    except Image.UnidentifiedImageError as err:
        raise ImageReadError(f"{path}: not an image Pillow can read") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageReadError(f"{path}: corrupt or truncated image ({err})") from err


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into float32 RGB in [0,1], shape (H, W, 3).

    Greyscale, palette, RGBA (composited on black), CMYK and 16-bit images are converted (16-bit greyscale and
    colour PNGs keep their precision: value / 65535); the EXIF orientation is applied. Raises `ImageReadError`
    naming the file for a missing, unreadable, truncated, non-image or decompression-bomb file.
    """
    path = Path(path)
    with _open_image(path) as img:
        # Checked from the header before Pillow decodes anything: a 16-bit colour PNG is decoded once, by TF.
        colour_type = _png16_colour_type(path) if img.format == "PNG" else None
        if colour_type is not None:
            return _read_png16(path, colour_type, _orientation(img))
        img.load()
        return _to_rgb_array(ImageOps.exif_transpose(img))


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) that `read_image` will return, from the file header only (no pixel decoding).

    Cheap enough to check a whole dataset before training. Raises `ImageReadError` like `read_image` for a
    missing, non-image or decompression-bomb file; a truncated body is only found by `read_image`.
    """
    with _open_image(Path(path)) as img:
        width, height = img.size
        # EXIF orientations 5-8 are transposes: read_image returns the image with its sides swapped.
        if _orientation(img) in (5, 6, 7, 8):
            return width, height
        return height, width


def to_uint8(image: np.ndarray, rounding: str = "round") -> np.ndarray:
    """float [0,1] → uint8. `rounding="truncate"` reproduces the originals' `astype(uint8)` saving."""
    scaled = np.clip(np.asarray(image, dtype=np.float32) * 255.0, 0.0, 255.0)
    if rounding == "truncate":
        return scaled.astype(np.uint8)
    if rounding == "round":
        return np.round(scaled).astype(np.uint8)
    raise ValueError(f"rounding must be 'round' or 'truncate', got {rounding!r}")


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    quality: int = 95,
    rounding: str = "round",
    protect: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write float32 [0,1] (H, W, 3) or (H, W, 1) as PNG or JPEG (by suffix), atomically.

    The image goes to a temporary file in the target folder and is renamed over `path`, so a crash never leaves
    a half-written output. `protect` lists input files that must never be overwritten.
    """
    path = Path(path)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageWriteError(f"{path}: cannot write '{path.suffix}', use .png, .jpg or .jpeg")
    if any(path.resolve() == Path(p).resolve() for p in protect):
        raise ImageWriteError(f"{path}: refusing to overwrite an input file")
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ImageWriteError(f"{path}: expected (H, W, 3) or (H, W, 1), got shape {np.shape(image)}")
    pixels = array if array.dtype == np.uint8 else to_uint8(array, rounding)
    options = {"quality": quality} if fmt == "JPEG" else {}
    try:
        with atomic_output(path) as tmp, open(tmp, "wb") as handle:
            Image.fromarray(pixels).save(handle, format=fmt, **options)
    except OSError as err:
        raise ImageWriteError(f"{path}: cannot write ({err})") from err
    return path


# === Atomic output ===


def _sibling(target: Path, suffix: str = "") -> Path:
    """A fresh hidden name beside `target` (nothing is created)."""
    return target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp{suffix}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yields a fresh temporary path beside `target` (its folder is created; the path itself is not) for the
    caller to write a file or a folder at; on leaving the block it replaces `target`, so a reader never sees half
    of one: a file is replaced in one rename; a folder (which cannot be renamed over another) in two, the old one
    moved aside first, so for that instant the path is absent, and if the second rename fails the old folder is
    moved back. On an exception in the block nothing is replaced, the temporary is removed and the exception
    propagates.

    The caller creates the temporary with plain open()/mkdir() (not mkstemp/mkdtemp), so the output gets the
    usual permissions (0o666/0o777 minus the umask) rather than owner-only ones. `suffix` ends the temporary's
    name, for writers that pick the format from it (Keras' `.weights.h5`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, suffix)
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            old = _sibling(target)
            os.replace(target, old)  # a folder cannot be renamed over a folder: the old copy goes last
            try:
                os.replace(tmp, target)
            except OSError:
                os.replace(old, target)
                raise
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        _remove(tmp)
