"""Running exported .tflite enhancers (LiteRT interpreter) and sampling int8 calibration crops.

`TFLiteEnhancer` follows the enhancer contract on numpy arrays, so tests, tiling and benchmarks can use a
.tflite file wherever they use the Keras enhancer.
"""

from __future__ import annotations

import collections
import os
from typing import Sequence

import numpy as np


def calibration_crops(images: Sequence[np.ndarray], *, size: int = 256, count: int = 32, seed: int = 0,
                      shape: tuple[int, int] | None = None) -> list[np.ndarray]:
    """`count` random crops, cycling over `images` (float32 H×W×3 in [0,1]), each float32 (1, h, w, 3).

    All crops share one shape, h = min(size, smallest image height) and likewise w: the TFLite calibrator
    sizes the dynamic-H×W model from the first sample only and feeds every later sample at that shape.
    Crops, not resizes, so the calibration sees the images' real pixel statistics (noise included).
    `shape` (h, w) fixes the crop shape instead (a model exported for one size); an image smaller than that
    is first enlarged to cover it (bilinear, aspect kept).
    """
    if not images:
        raise ValueError("calibration needs at least one image")
    if shape is None:
        height = min(size, *(np.shape(image)[0] for image in images))
        width = min(size, *(np.shape(image)[1] for image in images))
    else:
        height, width = shape
    rng = np.random.default_rng(seed)
    crops = []
    for index in range(max(count, 1)):
        image = _covering(np.asarray(images[index % len(images)], np.float32), height, width)
        top = int(rng.integers(0, image.shape[0] - height + 1))
        left = int(rng.integers(0, image.shape[1] - width + 1))
        crops.append(image[None, top:top + height, left:left + width, :3].copy())
    return crops


def _covering(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` (H, W, C), enlarged (bilinear, aspect kept) where it is smaller than height × width."""
    scale = max(height / image.shape[0], width / image.shape[1])
    if scale <= 1:
        return image
    import tensorflow as tf

    size = (max(height, round(image.shape[0] * scale)), max(width, round(image.shape[1] * scale)))
    return np.clip(tf.image.resize(image, size, method="bilinear").numpy(), 0.0, 1.0)


def tensor_dtypes(path: str | os.PathLike) -> collections.Counter:
    """How many tensors of each element type ("float32", "float16", "int8", ...) a .tflite file holds: weights,
    activations and quantization parameters alike (a float16 or int8 tensor exists only where the converter
    quantized something)."""
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=os.fspath(path)).get_tensor_details()
    return collections.Counter(np.dtype(detail["dtype"]).name for detail in details)


class TFLiteEnhancer:
    """Runs a .tflite written by `train.export.export_tflite` with the LiteRT interpreter.

    `enhancer(images, **extras)`: images float32 (N, H, W, 3) or (H, W, 3) in [0,1], any H×W (a file exported
    for one size, `fixed_size`: that size, else ValueError); each extra is a scalar or an (N,) array. Returns
    float32 of the same shape. The input tensors are resized (and the interpreter re-allocated) only when H×W
    changes; images of a batch run one at a time (the file has batch 1).
    """

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None = None,
                 signature: str = "serving_default"):
        from ai_edge_litert.interpreter import Interpreter

        self.path = os.fspath(path)
        self.interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
        runner = self.interpreter.get_signature_runner(signature)
        self.inputs = {name: detail["index"] for name, detail in runner.get_input_details().items()}
        self.output = runner.get_output_details()["enhanced"]["index"]
        # (H, W) of a file exported for one image size (`export_tflite(image_size=...)`), else None.
        height, width = (int(v) for v in runner.get_input_details()["image"]["shape_signature"][1:3])
        self.fixed_size = None if height < 0 or width < 0 else (height, width)
        self.extra_names = tuple(name for name in self.inputs if name != "image")
        self._allocated_shape: tuple[int, ...] | None = None

    def _resize(self, shape: tuple[int, ...]) -> None:
        if shape != self._allocated_shape:
            fixed = self.fixed_size
            if fixed is not None and tuple(shape[1:3]) != fixed:
                raise ValueError(f"{self.path}: exported for {fixed[0]}×{fixed[1]} images (llie export --size), "
                                 f"got {shape[1]}×{shape[2]}")
            self.interpreter.resize_tensor_input(self.inputs["image"], shape, strict=True)
            self.interpreter.allocate_tensors()
            self._allocated_shape = shape

    def ops(self) -> list[str]:
        """Names of the operators in the file (e.g. CONV_2D; a Flex op would be named Flex...)."""
        return [op["op_name"] for op in self.interpreter._get_ops_details()]

    def __call__(self, image: np.ndarray, **extras) -> np.ndarray:
        image = np.asarray(image, np.float32)
        single = image.ndim == 3
        batch = image[None] if single else image
        missing = set(self.extra_names) - set(extras)
        unknown = set(extras) - set(self.extra_names)
        if missing or unknown:
            raise ValueError(f"{self.path}: extra inputs must be {sorted(self.extra_names)}, "
                             f"got {sorted(extras)}")
        values = {name: np.broadcast_to(np.asarray(v, np.float32).reshape(-1), (len(batch),))
                  for name, v in extras.items()}
        self._resize((1, *batch.shape[1:]))
        result = np.empty(batch.shape, np.float32)
        output = self.interpreter.tensor(self.output)  # a view of the interpreter's buffer: one copy, not two
        for index, one in enumerate(batch):
            self.interpreter.set_tensor(self.inputs["image"], one[None])
            for name, value in values.items():
                self.interpreter.set_tensor(self.inputs[name], value[index:index + 1])
            self.interpreter.invoke()
            result[index] = output()[0]
        return result[0] if single else result
