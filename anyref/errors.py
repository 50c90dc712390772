"""Errors that say what went wrong and what to do, instead of a deep traceback."""


class AnyRefError(ValueError):
    """Base class for every error the package raises on purpose."""


class AnyRefConfigError(AnyRefError):
    """A preset, config file or config value is wrong."""


class AnyRefInputError(AnyRefError):
    """An image, text, box or audio given to the model is malformed."""


class AnyRefCheckpointError(AnyRefError):
    """A checkpoint directory is missing, incomplete or does not match the model."""


class AnyRefUsageError(AnyRefInputError):
    """A command-line argument that argparse refused: missing, unknown, or of the wrong type."""


class AnyRefWarning(UserWarning):
    """A note about an input the package adjusted for you (e.g. a stereo wav averaged to mono)."""
