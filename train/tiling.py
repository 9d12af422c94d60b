"""Tiled inference: enhance an image of any size in overlapping tiles with bounded memory.

Geometry. Along each axis tiles of `tile` pixels start every `tile - 2·overlap` pixels (the last one is shifted
back to end at the border, so every tile has the same shape and they batch together). Adjacent tiles therefore
share at least 2·overlap pixels: each reads `overlap` pixels of context beyond the seam between them.

Blending. A tile's weight is 0 within overlap/2 of an edge it shares with a neighbour, then rises linearly over
the next `overlap` pixels to 1 (a feathered seam centred in the shared band); weights are separable (rows ×
columns) and normalised per axis so they sum to 1 at every pixel. Hence for a model of receptive radius r
(output pixel depends on inputs within r), tiling equals whole-image inference (up to float rounding) whenever
r ≤ overlap/2, i.e. overlap ≥ 2r: only pixels at least overlap/2 from a tile's inner edge get weight.

Models with global statistics (KinD normalises by the image min/max) differ per tile; a spec's
`prepare_for_tiling(image, **extras) -> (prepared_image, enhancer_kwargs)` computes such statistics once on
the whole image and hands them to every tile.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles along one axis of `length` pixels (one tile at 0 when it fits)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - 2 * overlap))
    return starts + [length - tile]


def axis_weights(length: int, tile: int, overlap: int) -> list[np.ndarray]:
    """Per tile along one axis, its blend weight (float64, tile-length), normalised to sum 1 per pixel."""
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    distance = np.arange(size, dtype=np.float64)
    weights = []
    for start in starts:
        weight = np.ones(size)
        if overlap > 0:
            ramp_in = np.clip((distance - overlap / 2 + 0.5) / overlap, 0.0, 1.0)
            if start > 0:
                weight = np.minimum(weight, ramp_in)
            if start + size < length:
                weight = np.minimum(weight, ramp_in[::-1])
        weights.append(weight)
    total = np.zeros(length)
    for start, weight in zip(starts, weights):
        total[start:start + size] += weight
    if total.min() <= 0.0:  # cannot happen for tile > 2·overlap; guards the geometry above
        raise AssertionError(f"tiling leaves pixels uncovered (length={length}, tile={tile}, overlap={overlap})")
    return [weight / total[start:start + size] for start, weight in zip(starts, weights)]


def _as_batch_kwargs(kwargs: Mapping[str, Any], batch: int) -> dict[str, Any]:
    """Per-image scalars (numbers, 0-d or 1-element arrays) → float32 arrays of shape (batch,); others as is."""
    result = {}
    for name, value in kwargs.items():
        array = np.asarray(value) if isinstance(value, (int, float, np.ndarray, np.generic)) else None
        if array is not None and array.size == 1 and not isinstance(value, bool):
            result[name] = np.full((batch,), float(array.reshape(())), np.float32)
        else:
            result[name] = value
    return result


@functools.cache
def _graph_call() -> Callable[..., Any]:
    """One tf.function shared by all calls: it keeps a trace per enhancer and tile shape, so repeated
    `enhance_tiled` calls on the same model do not retrace."""
    import tensorflow as tf

    def call(enhancer, images, kwargs):
        return enhancer(images, training=False, **kwargs)

    return tf.function(call, reduce_retracing=True, autograph=False)


def _runner(enhancer: Any) -> Callable[..., np.ndarray]:
    """A Keras enhancer runs as a traced graph (all tiles share a shape); any other callable is used as is."""
    import keras

    if isinstance(enhancer, keras.Layer):
        return lambda images, **kw: _graph_call()(enhancer, images, kw).numpy()
    return lambda images, **kw: np.asarray(enhancer(images, **kw), np.float32)


def enhance_tiled(enhancer: Any, image: np.ndarray, *, tile: int = 512, overlap: int = 32,
                  extras: Mapping[str, Any] | None = None, prepare: Callable[..., Any] | None = None,
                  batch_size: int = 1) -> np.ndarray:
    """Enhance float32 (H, W, 3) in [0,1] tile by tile; returns float32 (H, W, 3).

    enhancer: a Keras enhancer (registry contract) or any callable (N, h, w, 3) float32 → same shape, taking
    `**extras`. extras: per-image scalars such as {"ratio": 5.0}. prepare: the model spec's optional
    `prepare_for_tiling`, run once on the whole image. `batch_size` tiles go through the model at a time, so
    peak memory is one batch of tiles plus the input and output images. When the image fits in one tile, this
    is plain whole-image inference.
    """
    if overlap < 0 or tile <= 2 * overlap:
        raise ValueError(f"need 0 <= overlap and tile > 2*overlap, got tile={tile}, overlap={overlap}")
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    kwargs = dict(extras or {})
    if prepare is not None:
        image, kwargs = prepare(image, **kwargs)
        image = np.asarray(image, np.float32)
    run = _runner(enhancer)
    height, width = image.shape[:2]
    if height <= tile and width <= tile:
        return run(image[None], **_as_batch_kwargs(kwargs, 1))[0]

    tile_h, tile_w = min(tile, height), min(tile, width)
    rows = list(zip(tile_starts(height, tile, overlap), axis_weights(height, tile, overlap)))
    cols = list(zip(tile_starts(width, tile, overlap), axis_weights(width, tile, overlap)))
    grid = [(row, col) for row in rows for col in cols]
    output = np.zeros(image.shape, np.float64)  # float64: blending identical tile values gives them back
    for first in range(0, len(grid), batch_size):
        chunk = grid[first:first + batch_size]
        tiles = np.stack([image[top:top + tile_h, left:left + tile_w] for (top, _), (left, _) in chunk])
        enhanced = run(tiles, **_as_batch_kwargs(kwargs, len(chunk)))
        for result, ((top, weight_y), (left, weight_x)) in zip(enhanced, chunk):
            blend = np.outer(weight_y, weight_x)[..., None]
            output[top:top + tile_h, left:left + tile_w] += blend * result
    return output.astype(np.float32)
