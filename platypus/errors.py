"""One error type for everything a user can fix; the entrypoint prints it as one paragraph."""


class PlatypusError(Exception):
    """Bad input or environment: the message names the key/file/line and what to do."""
