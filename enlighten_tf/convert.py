"""Original EnlightenGAN weights → this port: PyTorch state dicts (.pth, or an .npz twin) onto the Keras layers.

Upstream saves `netG.cpu().state_dict()` of a `DataParallel` wrapper, so keys carry a `module.` prefix (stripped
by `train.torch_weights.read_state_dict`); torch 0.3.1 wrote no `num_batches_tracked` (ignored when present).
Every mismatch raises `WeightsMismatchError` naming the tensor. `llie convert enlightengan SRC --out DST` writes
the enhancer's `.weights.h5` (recording the upsampling mode, see `enlighten_tf.enhancer`) and the upstream BSD-2
licence beside it.
"""

from __future__ import annotations

import argparse
import os

import keras

from train.callbacks import weights_output_path
from train.torch_weights import assign_state_dict, read_state_dict

# === Per-network mappings ===


def generator_layers(generator: keras.Model) -> dict[str, keras.layers.Layer]:
    """Upstream `Unet_resize_conv` module names → layers of `enlighten_tf.generator.Generator` (same names)."""
    return {layer.name: layer for layer in generator.layers}


def discriminator_layers(discriminator: keras.Model) -> dict[str, keras.layers.Layer]:
    """Upstream `NoNormDiscriminator` names (`model.0`, `model.2`, ...: every conv is followed by a LeakyReLU in
    the `nn.Sequential`, so convs sit at even indices) → the discriminator's convs."""
    return {f"model.{2 * index}": conv for index, conv in enumerate(discriminator.convs)}


def vgg16_layers(extractor: keras.Model) -> dict[str, keras.layers.Layer]:
    """Upstream `Vgg16` names (`conv{b}_{c}`) → the `losses_tf.vgg.vgg_features` convs (`block{b}_conv{c}`)."""
    return {f"conv{layer.name[5]}_{layer.name[-1]}": layer for layer in extractor.layers
            if isinstance(layer, keras.layers.Conv2D)}


def load_generator(generator: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Loads an upstream generator checkpoint (`*_net_G_A.pth`, with or without `module.`, or an .npz twin)."""
    assign_state_dict(generator_layers(generator), read_state_dict(path), source=str(path))
    return generator


def load_discriminator(discriminator: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Loads an upstream `NoNormDiscriminator` checkpoint (`*_net_D_A.pth` / `*_net_D_P.pth` or .npz)."""
    assign_state_dict(discriminator_layers(discriminator), read_state_dict(path), source=str(path))
    return discriminator


def load_vgg16(extractor: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Loads an upstream PyTorch `Vgg16` state dict (e.g. `model/vgg16.weight`, or the fixture's `vgg/w/`
    arrays) into a `vgg_features("vgg16", ...)` extractor; convs the extractor does not use are ignored."""
    state = read_state_dict(path, npz_prefixes=("vgg/w/", "w/"))
    assign_state_dict(vgg16_layers(extractor), state, source=str(path), allow_unexpected=True)
    return extractor


# === CLI ===


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `llie convert enlightengan`."""
    parser.add_argument("source", metavar="SRC",
                        help="upstream generator checkpoint (e.g. 200_net_G_A.pth; read with torch when installed, "
                             "else with the built-in reader) or an .npz with the same tensor names")
    parser.add_argument("--out", required=True, metavar="DST.weights.h5", type=weights_output_path,
                        help="output weights of the EnlightenGAN enhancer; LICENSE-EnlightenGAN-BSD2.txt is "
                             "written beside it")
    parser.add_argument("--no-align-corners", dest="align_corners", action="store_false",
                        help="the checkpoint was trained with torch >= 0.4 bilinear upsampling (align_corners="
                             "False); default: align_corners=True, as torch 0.3.1 and the released checkpoint")


def run_convert(args: argparse.Namespace) -> int:
    """`llie convert enlightengan SRC --out DST.weights.h5 [--no-align-corners]`: the weights (with their
    upsampling mode recorded) and the upstream licence beside them."""
    from enlighten_tf.enhancer import EnlightenGANEnhancer, save_enhancer_weights
    from train.export import ship_license_notice

    enhancer = EnlightenGANEnhancer(align_corners=args.align_corners, from_upstream=True)
    load_generator(enhancer.generator, args.source)
    path = save_enhancer_weights(enhancer, args.out)
    notice = ship_license_notice(enhancer.license_notice, path)
    print(f"wrote {path} (align_corners={enhancer.generator.align_corners}) and its licence {notice}")
    return 0
