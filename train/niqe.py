"""NIQE, the no-reference Natural Image Quality Evaluator (Mittal, Soundararajan & Bovik, IEEE SPL 2012).

Follows BasicSR's Python port of the official MATLAB release (`basicsr/metrics/niqe.py`), written anew here:
Y channel (BT.601, [0,255], rounded like MATLAB's uint8 `rgb2ycbcr`) → MSCN coefficients with a 7×7 Gaussian
window (`mode='nearest'`) → 96×96 blocks → 18 AGGD features per block at 2 scales (the second after MATLAB-style
bicubic `imresize` ×0.5 with antialiasing) → Mahalanobis-like distance to the pristine MVG using `pinv`.
Lower is better. Everything is computed in float64, as MATLAB does (BasicSR runs parts in float32).

The pristine-model parameters (`train/niqe/niqe_pris_params.npz`) come from BasicSR (Apache-2.0); see
`train/niqe/NOTICE.txt`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math
import os

import numpy as np
from scipy.ndimage import convolve
from scipy.special import gamma

from train.errors import WeightsMismatchError

BLOCK_SIZE = 96
_PARAMS_FILE = "niqe_pris_params.npz"
# BT.601 luma of MATLAB `rgb2ycbcr` for RGB in [0,1]: Y in [16, 235].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
# Neighbour shifts of the paired-product features (horizontal, vertical, two diagonals), as `np.roll` shifts.
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


# === Config ===


@dataclasses.dataclass(frozen=True)
class NiqeParams:
    """The pristine multivariate Gaussian: `mu` (36,), `cov` (36, 36), and the 7×7 local-statistics window."""

    mu: np.ndarray
    cov: np.ndarray
    window: np.ndarray


def load_niqe_params(path: str | os.PathLike | None = None) -> NiqeParams:
    """Read a NIQE parameter `.npz` (keys `mu_pris_param`, `cov_pris_param`, `gaussian_window`).

    `path=None` loads the bundled BasicSR file. A missing or malformed file raises `WeightsMismatchError`.
    """
    if path is None:
        return _bundled_params()
    try:
        with np.load(path, allow_pickle=False) as data:
            params = NiqeParams(
                mu=np.asarray(data["mu_pris_param"], np.float64).reshape(-1),
                cov=np.asarray(data["cov_pris_param"], np.float64),
                window=np.asarray(data["gaussian_window"], np.float64),
            )
    except (OSError, ValueError, KeyError) as err:
        raise WeightsMismatchError(f"{path}: not a NIQE parameter file ({err})") from err
    if params.mu.shape != (36,) or params.cov.shape != (36, 36) or params.window.ndim != 2:
        raise WeightsMismatchError(f"{path}: NIQE parameters must be mu (1,36), cov (36,36) and a 2-D window")
    return params


@functools.lru_cache(maxsize=1)
def _bundled_params() -> NiqeParams:
    resource = importlib.resources.files("train") / "niqe" / _PARAMS_FILE
    with importlib.resources.as_file(resource) as path:
        return load_niqe_params(path)


# === Image preparation ===


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """float RGB [0,1] (H, W, 3) → BT.601 Y in [16, 235], float64 (H, W), not rounded."""
    return np.asarray(image, np.float64) @ _Y_WEIGHTS + 16.0


def _cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's bicubic kernel (Keys, a = −0.5)."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _resize_matrix(in_length: int, scale: float, antialiasing: bool) -> np.ndarray:
    """(out, in) matrix of MATLAB `imresize` bicubic weights along one axis, symmetric padding folded in."""
    out_length = math.ceil(in_length * scale)
    kernel_width = 4.0 / scale if (scale < 1 and antialiasing) else 4.0
    # Output pixel x (1-based) samples input coordinate u, so that pixel edges map onto pixel edges.
    u = np.arange(1, out_length + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = u[:, None] - indices
    if scale < 1 and antialiasing:
        # A widened kernel interpolates and low-pass filters at once.
        weights = scale * _cubic(distance * scale)
    else:
        weights = _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # MATLAB pads symmetrically (edge pixel repeated): 1-based index i < 1 reads 1 − i, i > n reads 2n + 1 − i.
    index = indices.astype(np.int64)
    index = np.where(index < 1, 1 - index, index)
    index = np.where(index > in_length, 2 * in_length + 1 - index, index) - 1
    matrix = np.zeros((out_length, in_length))
    np.add.at(matrix, (np.repeat(np.arange(out_length), taps), index.ravel()), weights.ravel())
    return matrix


def matlab_imresize(image: np.ndarray, scale: float, antialiasing: bool = True) -> np.ndarray:
    """MATLAB `imresize(image, scale, 'bicubic')` of a 2-D array, float64; output ceil(H·scale) × ceil(W·scale)."""
    image = np.asarray(image, np.float64)
    if image.ndim != 2:
        raise ValueError(f"matlab_imresize expects a 2-D array, got shape {image.shape}")
    rows = _resize_matrix(image.shape[0], scale, antialiasing)
    cols = _resize_matrix(image.shape[1], scale, antialiasing)
    return rows @ image @ cols.T


# === Features ===


@functools.lru_cache(maxsize=1)
def _aggd_table() -> tuple[np.ndarray, np.ndarray]:
    """Candidate shapes α (0.2 … 10 step 0.001) and their ratio r(α) = Γ(2/α)² / (Γ(1/α) Γ(3/α))."""
    alphas = np.arange(0.2, 10.001, 0.001)
    ratios = gamma(2 / alphas) ** 2 / (gamma(1 / alphas) * gamma(3 / alphas))
    return alphas, ratios


def _aggd_fit(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching AGGD fit of each row of `samples` (B, N) → (alpha, beta_left, beta_right), each (B,).

    A row without negative (or positive) samples gives NaN betas, and `argmin` over an all-NaN row picks the
    first α (0.2): both as in the reference, whose NaN rows are then skipped by `nanmean`/the covariance.
    """
    alphas, ratios = _aggd_table()
    negative, positive = samples < 0, samples > 0
    squares = samples**2
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt((squares * negative).sum(1) / negative.sum(1))
        right_std = np.sqrt((squares * positive).sum(1) / positive.sum(1))
        gamma_hat = left_std / right_std
        r_hat = np.mean(np.abs(samples), axis=1) ** 2 / np.mean(squares, axis=1)
        r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = alphas[np.argmin((ratios[None, :] - r_hat_norm[:, None]) ** 2, axis=1)]
    spread = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left_std * spread, right_std * spread


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """18 NIQE features of each MSCN block (B, h, w) → (B, 18)."""
    flat = blocks.reshape(len(blocks), -1)
    alpha, beta_l, beta_r = _aggd_fit(flat)
    features = [alpha, (beta_l + beta_r) / 2]
    for shift in _SHIFTS:
        products = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, beta_l, beta_r = _aggd_fit(products.reshape(len(blocks), -1))
        mean = (beta_r - beta_l) * gamma(2 / alpha) / gamma(1 / alpha)
        features += [alpha, mean, beta_l, beta_r]
    return np.stack(features, axis=1)


def _mscn(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (Eq. 1 of the paper, C = 1)."""
    mu = convolve(image, window, mode="nearest")
    sigma = np.sqrt(np.abs(convolve(image * image, window, mode="nearest") - mu * mu))
    return (image - mu) / (sigma + 1)


def _split_blocks(image: np.ndarray, block_h: int, block_w: int) -> np.ndarray:
    """(rows·block_h, cols·block_w) → (rows·cols, block_h, block_w)."""
    rows, cols = image.shape[0] // block_h, image.shape[1] // block_w
    tiles = image[: rows * block_h, : cols * block_w].reshape(rows, block_h, cols, block_w)
    return tiles.transpose(0, 2, 1, 3).reshape(rows * cols, block_h, block_w)


# === Score ===


def niqe(image: np.ndarray, params: NiqeParams | None = None, *, crop_border: int = 0) -> float:
    """NIQE of one image: float RGB [0,1] (H, W, 3), or a Y/grey plane in [0,255] (H, W). Lower is better.

    Only whole 96×96 blocks count (the right/bottom remainder is cropped away), so H and W must be ≥ 96 and the
    image must hold at least 2 blocks. `crop_border` pixels are dropped on each side first.
    """
    params = params or _bundled_params()
    array = np.asarray(image, np.float64)
    if array.ndim == 3 and array.shape[-1] == 3:
        array = rgb_to_y(array)
    elif array.ndim != 2:
        raise ValueError(f"NIQE expects (H, W, 3) RGB in [0,1] or (H, W) in [0,255], got shape {array.shape}")
    if crop_border:
        array = array[crop_border:-crop_border, crop_border:-crop_border]
    # MATLAB's uint8 Y: the reference rounds "to be consistent with MATLAB's result".
    plane = np.round(array)
    rows, cols = plane.shape[0] // BLOCK_SIZE, plane.shape[1] // BLOCK_SIZE
    if rows * cols < 2:
        raise ValueError(f"NIQE needs at least two {BLOCK_SIZE}×{BLOCK_SIZE} blocks, image is {plane.shape}")
    plane = plane[: rows * BLOCK_SIZE, : cols * BLOCK_SIZE]

    per_scale = []
    for scale in (1, 2):
        mscn = _mscn(plane, params.window)
        per_scale.append(_block_features(_split_blocks(mscn, BLOCK_SIZE // scale, BLOCK_SIZE // scale)))
        if scale == 1:
            plane = matlab_imresize(plane / 255.0, 0.5) * 255.0
    features = np.concatenate(per_scale, axis=1)

    mu_distorted = np.nanmean(features, axis=0)
    complete = features[~np.isnan(features).any(axis=1)]
    cov_distorted = np.cov(complete, rowvar=False)
    difference = params.mu - mu_distorted
    distance = difference @ np.linalg.pinv((params.cov + cov_distorted) / 2) @ difference
    return float(np.sqrt(distance))
