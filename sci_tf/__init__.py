"""SCI (Ma et al., CVPR 2022): self-calibrated illumination learning, in Keras 3.

`SCIEnhancer` is the deployable model (presets "easy", "medium", "difficult": the authors' MIT weights);
`SCIEnhancer.fuse()` its inference form (what `llie enhance` and `llie export` run) with the BatchNorm folded
into the conv and width-packed convolutions where the width is known when the graph is built (eager calls,
`llie export --size`; `sci_tf.packing`); `SCI` is the training model (weight-shared stages, unsupervised loss `losses_tf.sci.sci_loss`).
"""

from sci_tf.enhancer import SCIEnhancer
from sci_tf.model import SCI
from sci_tf.networks import CalibrateNetwork, EnhanceNetwork
from sci_tf.optimizer import TorchAdam
from sci_tf.presets import DEFAULT_PRESET, PRESETS

__all__ = ["SCI", "SCIEnhancer", "EnhanceNetwork", "CalibrateNetwork", "TorchAdam", "PRESETS", "DEFAULT_PRESET"]
