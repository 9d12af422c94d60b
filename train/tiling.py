"""Tiled inference: enhance an image of any size in overlapping tiles with bounded memory.

Geometry. Along each axis tiles of `tile` pixels (rounded down to a multiple of `alignment`) start every
`tile - 2·overlap` pixels, rounded down to a multiple of `alignment`; the last tile starts at the last multiple
of `alignment` that leaves it at least `tile` pixels and runs to the border, so it is up to `alignment - 1`
pixels longer than the others. Adjacent tiles share at least 2·overlap pixels: each reads `overlap` pixels of
context beyond the seam between them.

Alignment. A network with k stride-2 poolings computes a function of a pixel's position modulo 2^k (its
pooling grid): the same content shifted by 8 px gives another output under 4 poolings. Tiles that start on the
whole image's grid (multiples of `alignment` = the model's `ModelSpec.tile_alignment`, 16 for KinD) see the
same pooling windows as whole-image inference, so tiling then differs from it only through the missing context
beyond tile edges.

Blending. A tile's weight is 0 within overlap/2 of an edge it shares with a neighbour, then rises linearly over
the next `overlap` pixels to 1 (a feathered seam centred in the shared band); weights are separable (rows ×
columns) and normalised per axis so they sum to 1 at every pixel. Hence for a model of receptive radius r
(output pixel depends on inputs within r) whose pooling grid the tiles respect, tiling equals whole-image
inference (up to float rounding) whenever r ≤ overlap/2, i.e. overlap ≥ 2r: only pixels at least overlap/2
from a tile's inner edge get weight. Networks whose far taps carry little weight (KinD) get close with less.

Models with global statistics (KinD normalises by the image min/max) differ per tile; a spec's
`prepare_for_tiling(image, **extras) -> (prepared_image, enhancer_kwargs)` computes such statistics once on
the whole image and hands them to every tile. A model that pads the image to its pooling grid itself
(EnlightenGAN: centred reflect padding to a multiple of 16) has its grid's origin off (0, 0) whenever H or W is
not a multiple of it; its `prepare_for_tiling` pads the whole image the same way, so tiles start on that grid,
and its `finish_tiling(output, image)` crops the padding off the blended output.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import numpy as np


def check_tiling(tile: int, overlap: int, alignment: int = 1) -> None:
    """`ValueError` unless the tiles advance: overlap ≥ 0 and tile (rounded down to a multiple of `alignment`)
    ≥ 2·overlap + alignment. The message states that rule with the numbers."""
    if alignment < 1:
        raise ValueError(f"alignment must be ≥ 1, got {alignment}")
    if overlap < 0:
        raise ValueError(f"overlap must be ≥ 0, got {overlap}")
    size = tile // alignment * alignment
    if size - 2 * overlap < alignment:
        rounded = f"tile rounded down to a multiple of {alignment} ({size})" if alignment > 1 else f"tile ({tile})"
        raise ValueError(f"{rounded} must be ≥ 2·overlap + {alignment} = 2·{overlap} + {alignment} = "
                         f"{2 * overlap + alignment}")


def tile_spans(length: int, tile: int, overlap: int, alignment: int = 1) -> list[tuple[int, int]]:
    """(start, end) of the tiles along one axis of `length` pixels; starts are multiples of `alignment`.

    One tile [0, length) when it fits (or exceeds `tile` by less than the alignment). Every tile but the last is
    `tile // alignment * alignment` long; the last ends at the border and is at most `alignment - 1` longer.
    """
    check_tiling(tile, overlap, alignment)
    size = tile // alignment * alignment
    last = max(length - size, 0) // alignment * alignment
    step = (size - 2 * overlap) // alignment * alignment
    starts = list(range(0, last, step)) + [last]
    return [(start, start + size) for start in starts[:-1]] + [(last, length)]


def axis_weights(length: int, tile: int, overlap: int,
                 alignment: int = 1) -> list[tuple[tuple[int, int], np.ndarray]]:
    """Per tile along one axis, ((start, end) as `tile_spans`, its blend weight): float64, the tile's own
    length, normalised to sum 1 per pixel."""
    spans = tile_spans(length, tile, overlap, alignment)
    weights = []
    for start, end in spans:
        weight = np.ones(end - start)
        if overlap > 0:
            ramp_in = np.clip((np.arange(end - start) - overlap / 2 + 0.5) / overlap, 0.0, 1.0)
            if start > 0:
                weight = np.minimum(weight, ramp_in)
            if end < length:
                weight = np.minimum(weight, ramp_in[::-1])
        weights.append(weight)
    total = np.zeros(length)
    for (start, end), weight in zip(spans, weights):
        total[start:end] += weight
    if total.min() <= 0.0:  # cannot happen when tiles share ≥ 2·overlap pixels; guards the geometry above
        raise AssertionError(f"tiling leaves pixels uncovered (length={length}, tile={tile}, overlap={overlap})")
    return [((start, end), weight / total[start:end]) for (start, end), weight in zip(spans, weights)]


def _as_batch_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Per-image scalars (numbers, 0-d or 1-element arrays) → float32 arrays of shape (1,), for a batch of one
    tile; others as is."""
    result = {}
    for name, value in kwargs.items():
        array = np.asarray(value) if isinstance(value, (int, float, np.ndarray, np.generic)) else None
        if array is not None and array.size == 1 and not isinstance(value, bool):
            result[name] = np.full((1,), float(array.reshape(())), np.float32)
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
    """A Keras enhancer runs as a traced graph (tiles come in at most four shapes); any other callable is used
    as is."""
    import keras

    if isinstance(enhancer, keras.Layer):
        return lambda images, **kw: _graph_call()(enhancer, images, kw).numpy()
    return lambda images, **kw: np.asarray(enhancer(images, **kw), np.float32)


def enhance_tiled(enhancer: Any, image: np.ndarray, *, tile: int = 512, overlap: int = 32, alignment: int = 1,
                  extras: Mapping[str, Any] | None = None, prepare: Callable[..., Any] | None = None,
                  finish: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Enhance float32 (H, W, 3) in [0,1] tile by tile; returns float32 (H, W, 3).

    enhancer: a Keras enhancer (registry contract) or any callable (N, h, w, 3) float32 → same shape, taking
    `**extras`. alignment: the model's pooling grid (`ModelSpec.tile_alignment`); tiles start on its multiples
    (see the module doc). extras: per-image scalars such as {"ratio": 5.0}. prepare, finish: the model spec's
    optional `prepare_for_tiling` (run once on the whole image) and `finish_tiling` (run once on the blended
    output of the prepared image, with the original image). One tile (at most (tile + alignment − 1)² pixels) goes
    through the model at a time, so peak memory is one tile's activations plus the input and output images.
    When the image fits in one tile, this is plain whole-image inference.
    """
    check_tiling(tile, overlap, alignment)
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    kwargs = dict(extras or {})
    prepared = image
    if prepare is not None:
        prepared, kwargs = prepare(image, **kwargs)
        prepared = np.asarray(prepared, np.float32)
    output = _blend_tiles(_runner(enhancer), prepared, _as_batch_kwargs(kwargs), tile, overlap, alignment)
    return output if finish is None else np.asarray(finish(output, image), np.float32)


def _blend_tiles(run: Callable[..., np.ndarray], image: np.ndarray, kwargs: Mapping[str, Any], tile: int,
                 overlap: int, alignment: int) -> np.ndarray:
    """`run` on each tile of (H, W, 3) `image`, blended by the tiles' weights → float32 (H, W, 3)."""
    height, width = image.shape[:2]
    rows = axis_weights(height, tile, overlap, alignment)
    cols = axis_weights(width, tile, overlap, alignment)
    if len(rows) == 1 and len(cols) == 1:
        return run(image[None], **kwargs)[0]
    output = np.zeros(image.shape, np.float64)  # float64: blending identical tile values gives them back
    for (top, bottom), weight_y in rows:
        for (left, right), weight_x in cols:
            enhanced = run(image[None, top:bottom, left:right], **kwargs)[0]
            output[top:bottom, left:right] += np.outer(weight_y, weight_x)[..., None] * enhanced
    return output.astype(np.float32)
