"""`KinD`: the official inference pipelines (evaluate.py and evaluate_LOLdataset.py) as one Keras enhancer.

Enhancer contract: `KinD()(image, ratio=None)` with image float32 NHWC in [0,1], any H×W, batch ≥ 1, and
`ratio` float32 (N,) (or a scalar; default 5.0, evaluate.py's hard-coded value) → enhanced image in [0,1].
"""

from __future__ import annotations

import keras
from keras import ops

from kind_tf.layers import GreyGuide, min_max_normalize, stretch_whole_image
from kind_tf.networks import DecomNet, IlluminationAdjustNet, RestorationNet

MODES = ("evaluate", "lol")
# evaluate.py hard-codes `ratio = 5.0`.
DEFAULT_RATIO = 5.0
# evaluate_LOLdataset.py: ratio = mean(I_high / (I_low + 0.0001)).
LOL_RATIO_EPSILON = 1e-4


# === Model ===


@keras.saving.register_keras_serializable(package="kind_tf")
class KinD(keras.Model):
    """Decomposition → reflectance restoration → illumination adjustment, then the script's recombination.

    mode="evaluate" (evaluate.py): final = I·x + (1 − I)·(restored_R · guide · adjusted_I), where x is the
      min-max-normalised input, I the decomposed illumination and guide = min(sqrt(2·blur(grey(R))), 1).
    mode="lol" (evaluate_LOLdataset.py): final = restored_R · adjusted_I (no guide, no fusion with the input);
      the script computes the ratio per image from the reference image, see `lol_ratio`.
    The networks may be passed in (a trainer's own instances, so trained weights are shared, not copied).
    """

    # The enhancer contract's licence to ship with exports: none, KinD's weights carry no licence (users convert
    # their own copy; none ship with this project).
    license_notice = None

    def __init__(
        self,
        mode: str = "evaluate",
        default_ratio: float = DEFAULT_RATIO,
        decom_net: DecomNet | None = None,
        restoration_net: RestorationNet | None = None,
        adjust_net: IlluminationAdjustNet | None = None,
        **kwargs,
    ):
        # The pipeline's own arithmetic (normalisation, guide, fusion) is float32 under any global policy, so
        # the input is not rounded to bfloat16 before the stretch; the networks follow the global policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.default_ratio = float(default_ratio)
        self.decom_net = decom_net or DecomNet(name="decom_net")
        self.restoration_net = restoration_net or RestorationNet(name="restoration_net")
        self.adjust_net = adjust_net or IlluminationAdjustNet(name="illumination_adjust_net")
        self.guide = GreyGuide(name="grey_guide", dtype="float32")

    def build(self, input_shape=None):
        """Creates every variable (the pipeline works for any H×W, so the shape does not matter)."""
        if not self.built:
            self.intermediates(ops.zeros((1, 4, 4, 3)))
        self.built = True

    def _ratio_map(self, illumination, ratio):
        """The adjust net's second channel: one constant map per image, filled with that image's ratio."""
        ratio = self.default_ratio if ratio is None else ratio
        ratio = ops.reshape(ops.cast(ratio, "float32"), (-1, 1, 1, 1))
        return ops.ones_like(illumination) * ratio

    def intermediates(self, image, ratio=None, normalize: bool = True) -> dict:
        """Every stage, unclipped, named as in the reference fixtures.

        image (N,H,W,3) in [0,1]; ratio (N,), scalar or None (default ratio). With `normalize=False` the image
        is taken as already min-max normalised (tiling: the stretch must use the whole image's min/max).
        Keys: x_norm, decom_R, decom_I, restoration_r, adjust_i, final; evaluate mode adds r_gray,
        r_gray_gauss, low_i (each (N,H,W,1)), result_denoise and fusion4.
        """
        image = ops.convert_to_tensor(image, dtype="float32")
        x_norm = min_max_normalize(image) if normalize else image
        # The networks run in the dtype policy's compute dtype; every stage is handed on as float32.
        decom_r, decom_i = (ops.cast(stage, "float32") for stage in self.decom_net(x_norm))
        restoration_r = ops.cast(self.restoration_net([decom_r, decom_i]), "float32")
        # relu(I) == I (I is a sigmoid): a tensor of its own for the adjust net, so TFLite's int8 quantizer can give
        # it the scale its concat with the ratio map needs, apart from the restoration concat's (both concats must
        # share one scale across their inputs; one shared I cannot satisfy both).
        adjust_input = ops.relu(decom_i)
        adjust_i = ops.cast(self.adjust_net([adjust_input, self._ratio_map(decom_i, ratio)]), "float32")
        stages = {"x_norm": x_norm, "decom_R": decom_r, "decom_I": decom_i, "restoration_r": restoration_r,
                  "adjust_i": adjust_i}
        if self.mode == "lol":
            stages["final"] = restoration_r * adjust_i
            return stages
        stages.update(self.guide.stages(decom_r))
        stages["result_denoise"] = restoration_r * stages["low_i"]
        stages["fusion4"] = stages["result_denoise"] * adjust_i
        stages["final"] = decom_i * x_norm + (1.0 - decom_i) * stages["fusion4"]
        return stages

    def call(self, image, ratio=None, normalize: bool = True):
        """image (N,H,W,3) in [0,1], ratio (N,) (None: `default_ratio`) → enhanced (N,H,W,3) float32 in [0,1]."""
        # The script saves clip(final·255); the float `final` can leave [0,1] by rounding, the contract cannot.
        return ops.clip(self.intermediates(image, ratio, normalize)["final"], 0.0, 1.0)

    def lol_ratio(self, low_image, high_image, normalize: bool = True):
        """evaluate_LOLdataset.py's per-image ratio: mean(I_high / (I_low + 1e-4)) over the DecomNet outputs.

        low_image, high_image (N,H,W,3) in [0,1] (each min-max normalised first, like `load_images`) → (N,).
        """
        low = ops.convert_to_tensor(low_image, dtype="float32")
        high = ops.convert_to_tensor(high_image, dtype="float32")
        if normalize:
            low, high = min_max_normalize(low), min_max_normalize(high)
        illumination_low = ops.cast(self.decom_net(low)[1], "float32")
        illumination_high = ops.cast(self.decom_net(high)[1], "float32")
        return ops.mean(illumination_high / (illumination_low + LOL_RATIO_EPSILON), axis=(1, 2, 3))

    def with_mode(self, mode: str) -> "KinD":
        """A built `KinD` in `mode` on THIS model's networks (shared variables, no copies), e.g. "lol" for
        evaluate_LOLdataset.py's restored·adjusted output from a model loaded for evaluate.py."""
        other = KinD(mode=mode, default_ratio=self.default_ratio, decom_net=self.decom_net,
                     restoration_net=self.restoration_net, adjust_net=self.adjust_net, name=f"{self.name}_{mode}")
        other.build()
        return other

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "default_ratio": self.default_ratio}


def normalize_for_tiling(image, **extras):
    """`ModelSpec.prepare_for_tiling` for KinD: the global min-max stretch on the WHOLE image, once.

    image (H,W,3) or (N,H,W,3) in [0,1] → (normalised image, same rank and type family; keyword arguments for
    each tile call = the extras plus `normalize=False`). Tiles then see the same stretch as the whole image; only
    the guide's Gaussian blur (radius 12 px) still sees tile borders, which the tile overlap bounds.
    """
    tensor = ops.convert_to_tensor(image, dtype="float32")
    stretched = stretch_whole_image(tensor) if len(tensor.shape) == 3 else min_max_normalize(tensor)
    if not keras.ops.is_tensor(image):
        stretched = ops.convert_to_numpy(stretched)
    return stretched, {**extras, "normalize": False}
