"""One error type for everything a user can fix, and how the entrypoint reports it: one paragraph, exit code 2."""

from __future__ import annotations


class PlatypusError(Exception):
    """Bad input or environment: the message names the key/file/line and what to do."""


class ConfigError(PlatypusError):
    """A command-line problem found before the run starts; ``cause`` is the Hydra/OmegaConf error, if any."""

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.cause = cause


EXIT_USER_ERROR = 2


def fail(message: str, show_traceback: bool = False) -> None:
    """Print the one paragraph on stderr and exit with code 2 (``show_traceback``: re-raise, the full traceback)."""
    import sys

    if show_traceback:
        raise  # noqa: PLE0704 - re-raises the exception being handled: the full traceback
    print(f"\nerror: {message}\n(nothing finished was changed; add traceback=true for the full traceback)", file=sys.stderr)
    raise SystemExit(EXIT_USER_ERROR) from None
