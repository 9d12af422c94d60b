"""Same-machine timings of the PyTorch originals' architectures, for the ratios the issues' targets are quoted in.

    python -m bench.torch_reference [--size 400x600 --size 1080x1920] [--threads 2] [--repeats 10]

Needs only torch and numpy: run it from the repository root with any Python that has them (TensorFlow and the
models are not imported; of this project only bench.timing and train.sizes, which need the standard library and
numpy). The
networks are rebuilt here from the architecture descriptions in ../shared/reference/{sci,enlightengan}/README.md
(SCI's `Finetunemodel` = EnhanceNetwork(layers=1, channels=3); EnlightenGAN's `Unet_resize_conv` with the official
options) with random weights, in eval mode under `torch.inference_mode()`: the time of a forward pass does not
depend on the weight values. It prints ms/image (median after warm-up) per model and size; compare with the rows
of `python -m bench.bench_sci` / `bench_enlightengan` measured on the same machine.
"""

from __future__ import annotations

import argparse
import os

import torch
from torch import nn
from torch.nn import functional as F

from bench.timing import measure, parse_size


class SCIEnhanceNetwork(nn.Module):
    """Conv-ReLU, one residual Conv-BN-ReLU block, Conv-Sigmoid; i = clamp(out + x, 1e-4, 1), r = clamp(x/i, 0, 1)."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.in_conv = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU())
        self.out_conv = nn.Sequential(nn.Conv2d(channels, 3, 3, padding=1), nn.Sigmoid())

    def forward(self, x):
        fea = self.in_conv(x)
        fea = fea + self.block(fea)
        illumination = torch.clamp(self.out_conv(fea) + x, 1e-4, 1.0)
        return torch.clamp(x / illumination, 0.0, 1.0)


def _block(cin: int, cout: int) -> nn.Sequential:
    # EnlightenGAN's order: conv → LeakyReLU(0.2) → BatchNorm.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2), nn.BatchNorm2d(cout))


class EnlightenGANGenerator(nn.Module):
    """Attention U-Net (`Unet_resize_conv`, official options): reflect pad to 16, gray attention on every skip."""

    def __init__(self):
        super().__init__()
        widths = [32, 64, 128, 256]
        self.down = nn.ModuleList()
        cin = 4
        for width in widths:
            self.down.append(nn.Sequential(_block(cin, width), _block(width, width)))
            cin = width
        self.conv5_1, self.conv5_2 = _block(256, 512), _block(512, 512)
        self.deconvs = nn.ModuleList(nn.Conv2d(w * 2, w, 3, padding=1) for w in reversed(widths))
        self.up_blocks = nn.ModuleList()
        for width in reversed(widths[1:]):
            self.up_blocks.append(nn.Sequential(_block(width * 2, width), _block(width, width)))
        self.conv9_1 = _block(64, 32)
        self.conv9_2 = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.LeakyReLU(0.2))
        self.conv10 = nn.Conv2d(32, 3, 1)

    def forward(self, x):
        gray = 1.0 - (0.299 * (x[:, :1] + 1) + 0.587 * (x[:, 1:2] + 1) + 0.114 * (x[:, 2:] + 1)) / 2.0
        height, width = x.shape[2:]
        pad_h, pad_w = (16 - height % 16) % 16, (16 - width % 16) % 16
        pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        if pad_h or pad_w:
            x, gray = F.pad(x, pads, mode="reflect"), F.pad(gray, pads, mode="reflect")
        grays, skips, features = [gray], [], torch.cat([x, gray], 1)
        for level, down in enumerate(self.down):
            features = down(features)
            skips.append(features * grays[level])
            features = F.max_pool2d(features, 2)
            grays.append(F.max_pool2d(grays[level], 2))
        features = self.conv5_2(self.conv5_1(features) * grays[4])
        for index, deconv in enumerate(self.deconvs):
            upsampled = F.interpolate(features, scale_factor=2, mode="bilinear", align_corners=True)
            features = torch.cat([deconv(upsampled), skips[3 - index]], 1)
            features = self.up_blocks[index](features) if index < 3 else self.conv9_2(self.conv9_1(features))
        output = self.conv10(features) * gray + x
        return output[:, :, pads[2]:pads[2] + height, pads[0]:pads[0] + width]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", dest="sizes", action="append", type=parse_size, metavar="HxW",
                        help="height x width (repeatable; default 400x600 and 1080x1920)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", default="sci,enlightengan")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"sci": (SCIEnhanceNetwork, (0.0, 1.0)), "enlightengan": (EnlightenGANGenerator, (-1.0, 1.0))}
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':<14}{'size':<11}{'ms/image':>10}")
    for name in args.models.split(","):
        build, (low, high) = models[name]
        model = build().eval()
        for height, width in args.sizes or [(400, 600), (1080, 1920)]:
            image = torch.empty(1, 3, height, width).uniform_(low, high)
            with torch.inference_mode():
                ms = measure(lambda: model(image), warmup=args.warmup, repeats=args.repeats).median_ms
            print(f"{name:<14}{f'{height}x{width}':<11}{ms:>10.1f}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
