"""Image IO: any image Pillow reads → float32 RGB [0,1] (H, W, 3); float32 [0,1] → PNG/JPEG written atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import ExifTags, Image, ImageOps

from train.errors import ImageReadError, ImageWriteError

# Pillow's own bomb guard (~89 Mpx warns, 2x that errors); we turn both into ImageReadError.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates its file as 0600; outputs get the mode a plain open() would give them (0666 minus the umask,
# read once here because reading it means setting it, which is not thread-safe).
_OUTPUT_MODE = 0o666 & ~_current_umask()


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


@contextlib.contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """Open `path` with Pillow, turning every way it can fail into an `ImageReadError` naming the file."""
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                yield img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"{path}: image too large to decode safely ({err})") from err
    except Image.UnidentifiedImageError as err:
        raise ImageReadError(f"{path}: not an image Pillow can read") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageReadError(f"{path}: corrupt or truncated image ({err})") from err


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into float32 RGB in [0,1], shape (H, W, 3).

    Greyscale, palette, RGBA (composited on black), CMYK and 16-bit images are converted; the EXIF orientation
    is applied. Raises `ImageReadError` naming the file for a missing, unreadable, truncated, non-image or
    decompression-bomb file.
    """
    with _open_image(Path(path)) as img:
        img.load()
        return _to_rgb_array(ImageOps.exif_transpose(img))


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) that `read_image` will return, from the file header only (no pixel decoding).

    Cheap enough to check a whole dataset before training. Raises `ImageReadError` like `read_image` for a
    missing, non-image or decompression-bomb file; a truncated body is only found by `read_image`.
    """
    with _open_image(Path(path)) as img:
        width, height = img.size
        # EXIF orientations 5-8 are transposes: read_image returns the image with its sides swapped. The base
        # class getexif reads only what the header gave; PngImageFile.getexif would decode the whole image.
        if Image.Image.getexif(img).get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8):
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise ImageWriteError(f"{path}: cannot write ({err})") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), _OUTPUT_MODE)
            options = {"quality": quality} if fmt == "JPEG" else {}
            Image.fromarray(pixels).save(handle, format=fmt, **options)
        os.replace(tmp, path)
    except OSError as err:
        raise ImageWriteError(f"{path}: cannot write ({err})") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
