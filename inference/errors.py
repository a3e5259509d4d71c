"""The one exception type for user-facing load errors."""


class ModelError(Exception):
    """A problem with the model the user pointed at (missing file, bad value...): a one-line message
    naming the file or value, shown to the user without a traceback."""
