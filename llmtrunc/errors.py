"""The one exception type that the CLI turns into a one-line message and a non-zero exit."""


class LLMTruncError(Exception):
    """A user-facing error: bad input, missing data, unknown model or task."""
