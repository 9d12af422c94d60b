"""Image sizes on the command line: "HEIGHTxWIDTH" (e.g. 400x600), as `llie export --size` and the benchmarks
take them. Standard library only, so the torch-only reference benchmark can use it too."""

from __future__ import annotations

import argparse


def parse_size(text: str) -> tuple[int, int]:
    """ "400x600" (height × width) → (400, 600); an argparse type (bad text → ArgumentTypeError)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHTxWIDTH, e.g. 400x600") from err
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be positive")
    return height, width
