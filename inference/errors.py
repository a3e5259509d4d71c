"""The one exception type for user-facing load errors (defined in the engine boundary, inference.api)."""

from .api import ModelError

__all__ = ["ModelError"]
