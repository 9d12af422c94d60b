"""Losses and metrics of low-light image enhancement, as Keras objects and plain functions (NHWC float32).

Generic losses are exported here; the model-specific ones live in `losses_tf.kind`, `losses_tf.sci` and
`losses_tf.enlighten` (import those modules directly). Loss functions return per-image values (N,); the Loss
classes reduce them (batch mean by default) and always compute in float32, whatever the dtype policy.
"""

from losses_tf.adversarial import (
    gan_bce_discriminator_loss,
    gan_bce_generator_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    relativistic_lsgan_discriminator_loss,
    relativistic_lsgan_generator_loss,
)
from losses_tf.core import ImageLoss
from losses_tf.lowlight import (
    ColorConstancyLoss,
    EdgeLoss,
    ExposureControlLoss,
    FrequencyLoss,
    IlluminationSmoothnessLoss,
    RegionLoss,
    SpatialConsistencyLoss,
    color_constancy_loss,
    edge_loss,
    exposure_control_loss,
    frequency_loss,
    illumination_smoothness_loss,
    region_loss,
    spatial_consistency_loss,
)
from losses_tf.metrics import PSNR, SSIM, psnr, ssim
from losses_tf.perceptual import PerceptualLoss, perceptual_loss
from losses_tf.pixel import (
    CharbonnierLoss,
    HuberLoss,
    L1Loss,
    L2Loss,
    LogMSELoss,
    SmoothL1Loss,
    charbonnier_loss,
    huber_loss,
    l1_loss,
    l2_loss,
    log_mse_loss,
    smooth_l1_loss,
)
from losses_tf.structure import MSSSIMLoss, SSIMLoss, ms_ssim_loss, ssim_loss

__all__ = [
    "CharbonnierLoss", "ColorConstancyLoss", "EdgeLoss", "ExposureControlLoss", "FrequencyLoss", "HuberLoss",
    "IlluminationSmoothnessLoss", "ImageLoss", "L1Loss", "L2Loss", "LogMSELoss", "MSSSIMLoss", "PSNR",
    "PerceptualLoss", "RegionLoss", "SSIM", "SSIMLoss", "SmoothL1Loss", "SpatialConsistencyLoss",
    "charbonnier_loss", "color_constancy_loss", "edge_loss", "exposure_control_loss", "frequency_loss",
    "gan_bce_discriminator_loss", "gan_bce_generator_loss", "huber_loss", "illumination_smoothness_loss",
    "l1_loss", "l2_loss", "log_mse_loss", "lsgan_discriminator_loss", "lsgan_generator_loss", "ms_ssim_loss",
    "perceptual_loss", "psnr", "region_loss", "relativistic_lsgan_discriminator_loss",
    "relativistic_lsgan_generator_loss", "smooth_l1_loss", "spatial_consistency_loss", "ssim", "ssim_loss",
]
