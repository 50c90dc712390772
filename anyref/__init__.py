"""AnyRef, rebuilt to be learned: referring segmentation with an `<obj>` token and the refocusing mechanism."""
from .config import AnyRefConfig, preset
from .errors import AnyRefCheckpointError, AnyRefConfigError, AnyRefError, AnyRefInputError
from .model import AnyRefModel, Batch, Generation

__all__ = ["AnyRefConfig", "AnyRefModel", "Batch", "Generation", "preset", "AnyRefError", "AnyRefConfigError",
           "AnyRefInputError", "AnyRefCheckpointError"]
__version__ = "0.1.0"
