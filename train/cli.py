"""The `llie` command: enhance / train / evaluate / export / convert / synthesize.

Parsers are built here; each subcommand's flags and work live in its own module (`train.enhance`,
`train.evaluate`, `train.export`, `train.synthetic`) or, for `train` and `convert`, in the model's registry
entry. Any `LLIEError` becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from train import registry
from train.errors import LLIEError, NotAvailableError

# Module implementing a subcommand: must define add_arguments(parser) and run(args) -> int.
_SUBCOMMANDS = {
    "enhance": ("train.enhance", "enhance low-light images (files, folders, globs) with a model"),
    "evaluate": ("train.evaluate", "PSNR/SSIM against ground truth, or NIQE without it"),
    "export": ("train.export", "export an enhancer to SavedModel or TFLite"),
    "synthesize": ("train.synthetic", "make a paired low-light dataset (LOL layout) from normal-light photos"),
}


def _try_import(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name == module:
            return None
        raise


def _not_available(what: str):
    def run(_args: argparse.Namespace) -> int:
        raise NotAvailableError(f"'llie {what}' is not available yet in this version")

    return run


def _add_train(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a model on a tf.data pipeline (see `llie train -h`)",
                                   description="Train a model. Each model registers its own training commands.")
    commands = parser.add_subparsers(dest="train_command", metavar="COMMAND")
    commands.required = True
    for name in registry.available():
        for command in registry.get(name).train_commands:
            sub = commands.add_parser(command.name, help=command.help, description=command.help)
            command.add_arguments(sub)
            sub.set_defaults(func=command.run)
    parser.set_defaults(func=_not_available("train"))


def _add_convert(subparsers) -> None:
    parser = subparsers.add_parser("convert", help="convert the original authors' weights to .weights.h5",
                                   description="Convert an original checkpoint into this project's weights.")
    models = parser.add_subparsers(dest="convert_model", metavar="MODEL")
    models.required = True
    for name in registry.available():
        spec = registry.get(name)
        if spec.run_convert is None:
            continue
        sub = models.add_parser(name, help=f"convert {name} weights", description=f"Convert {name} weights.")
        if spec.add_convert_arguments is not None:
            spec.add_convert_arguments(sub)
        sub.set_defaults(func=spec.run_convert)
    parser.set_defaults(func=_not_available("convert"))


def build_parser() -> argparse.ArgumentParser:
    """The full `llie` argument parser."""
    parser = argparse.ArgumentParser(
        prog="llie",
        description="Low-light image enhancement with KinD, SCI and EnlightenGAN (TensorFlow 2 / Keras 3).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, (module_name, help_text) in _SUBCOMMANDS.items():
        module = _try_import(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if module is None:
            sub.set_defaults(func=_not_available(name))
        else:
            module.add_arguments(sub)
            sub.set_defaults(func=module.run)
    _add_train(subparsers)
    _add_convert(subparsers)
    return parser


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and initialise its devices with the process's stderr (fd 2) sent to /dev/null.

    TF 2.21 prints oneDNN/CUDA notices from C++ before absl logging is initialised, where TF_CPP_MIN_LOG_LEVEL
    cannot silence them; a newcomer should see our one-line messages, not those. Python-level errors still
    surface: the descriptor is restored before any exception propagates. Set LLIE_TF_LOGS=1 to keep the notices.
    """
    if os.environ.get("LLIE_TF_LOGS") == "1" or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_logical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `llie` console script; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _import_tensorflow_quietly()  # the model registry entries import TensorFlow while the parser is built
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except LLIEError as err:
        print(f"llie {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"llie {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
