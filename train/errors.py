"""One exception type per kind of user mistake; each message names the file or tensor at fault.

The CLI turns any `LLIEError` into one line on stderr and a non-zero exit after finishing the rest of a batch.
"""


class LLIEError(Exception):
    """Base class of every user-facing error of this project."""


class ImageReadError(LLIEError):
    """An image file is missing, corrupt, truncated, not an image, or too large to decode safely."""


class ImageWriteError(LLIEError):
    """An output image could not be written (bad extension, unwritable folder, would overwrite an input)."""


class DatasetLayoutError(LLIEError):
    """A dataset folder is missing, empty, or its pairs do not match (names or sizes)."""


class WeightsMismatchError(LLIEError):
    """A weights file does not fit the model: missing, unexpected or wrongly shaped tensors."""


class NotAvailableError(LLIEError):
    """A CLI feature or model that this installation does not provide (yet)."""
