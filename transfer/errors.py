"""The one exception type the CLI turns into a clear message and a non-zero exit."""


class TransferError(Exception):
    """A user-facing error: the message names the file, line, net or value at fault."""
