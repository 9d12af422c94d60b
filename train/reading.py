"""Reading image files inside tf.data: the bridge to `train.io.read_image`, bad-file skipping, error types.

The pipelines call `read_images` on string tensors of paths; it runs `read_image` through `tf.numpy_function`,
so every file is decoded exactly as everywhere else in the project (EXIF orientation, 16-bit, palettes...) and
a failure names the file. tf.data reports such a failure as a `tf.errors.OpError`; `pipeline_errors` turns it
back into the `ImageReadError` / `DatasetLayoutError` it was.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from train.errors import DatasetLayoutError, ImageReadError, LLIEError
from train.folders import check_same_size
from train.io import read_image

log = logging.getLogger("train.data")

_PIPELINE_ERROR = re.compile(r"\b(ImageReadError|DatasetLayoutError): ([^\n]*)")
_ERROR_TYPES = {cls.__name__: cls for cls in (ImageReadError, DatasetLayoutError)}


@contextlib.contextmanager
def pipeline_errors() -> Iterator[None]:
    """Turn the TensorFlow error raised by a failed file read inside a pipeline back into our own error type.

    tf.data reports an exception of the reading function as a `tf.errors.OpError` whose message holds
    "ImageReadError: <file>: ..."; inside this block it is re-raised as that `ImageReadError` (or
    `DatasetLayoutError`), which the CLI prints as one line. Other errors pass through unchanged.
    """
    try:
        yield
    except tf.errors.OpError as err:
        found = _PIPELINE_ERROR.search(err.message or "")
        if found is None:
            raise
        raise _ERROR_TYPES[found.group(1)](found.group(2)) from err


class _ExitGuard:
    """Lets Python exit while a pipeline iterator is still alive.

    A tf.data thread that enters the Python reading function while the interpreter finalizes waits forever for
    the GIL, and exit hangs (e.g. after `it = iter(dataset); next(it)` at the end of a script). At exit, before
    finalizing, `settle` makes further reads return a blank image at once (nobody will see it: the program is
    ending), and waits until no read has run for a moment: by then the prefetch buffers are full and the
    tf.data threads idle. (Returning "skipped" would not do: the filter after the read would keep asking for
    more, and raising floods the log with one TensorFlow warning per refused read.)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closing = False
        self._busy = 0
        self._last = -float("inf")

    def _touch(self, change: int) -> None:
        with self._lock:
            self._busy += change
            self._last = time.monotonic()

    @contextlib.contextmanager
    def reading(self) -> Iterator[bool]:
        """Wraps one read; yields True when Python is exiting and the read should return a blank image."""
        self._touch(+1)
        try:
            yield self._closing
        finally:
            self._touch(-1)

    def settle(self, quiet_s: float = 0.2, timeout_s: float = 3.0) -> None:
        self._closing = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._busy == 0 and time.monotonic() - self._last >= quiet_s:
                    return
            time.sleep(0.02)


_EXIT_GUARD = _ExitGuard()
atexit.register(_EXIT_GUARD.settle)


def _blank(ok: bool, count: int, size: int) -> tuple:
    return (np.bool_(ok), *[np.zeros((size, size, 3), np.float32) for _ in range(count)])


def _read_function(same_size: bool, skip_bad: bool, blank_size: int) -> Callable[..., tuple]:
    """Python function for tf.numpy_function: file paths (bytes) → (ok, image, image, ...)."""

    def read(*raw_paths: bytes) -> tuple:
        with _EXIT_GUARD.reading() as exiting:
            if exiting:
                return _blank(True, len(raw_paths), blank_size)
            paths = [Path(os.fsdecode(raw)) for raw in raw_paths]
            try:
                images = [read_image(path) for path in paths]
                if same_size:
                    check_same_size(paths[0], images[0].shape, paths[1], images[1].shape)
            except LLIEError as err:
                if not skip_bad:
                    raise
                log.warning("skipping %s", err)
                return _blank(False, len(paths), 0)
            return (np.True_, *images)

    return read


def read_images(paths: Sequence[tf.Tensor], *, same_size: bool, skip_bad: bool, min_size: int | None = None
                ) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
    """Read the files at `paths` (scalar string tensors) → (ok, images (H, W, 3) float32 in [0,1]).

    `same_size`: the two images are a pair and must have one size (else `DatasetLayoutError` naming both). A
    failure raises, naming the file, unless `skip_bad`: then it is logged and `ok` is False (drop the element
    with `dataset.filter`). `min_size`: the smallest side the next steps need (for the blank images read while
    Python exits).
    """
    read = _read_function(same_size, skip_bad, min_size or 1)
    ok, *images = tf.numpy_function(read, list(paths), [tf.bool] + [tf.float32] * len(paths), stateful=False)
    ok.set_shape([])
    for image in images:
        image.set_shape([None, None, 3])
    return ok, tuple(images)


def path_table(paths: Sequence[Path]) -> tf.Tensor:
    """File paths as a 1-D string tensor (file-system encoding), to index inside a pipeline."""
    return tf.constant([os.fsencode(path) for path in paths], dtype=tf.string)
