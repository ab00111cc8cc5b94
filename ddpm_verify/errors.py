"""The ways a check can end other than with a verdict on the numbers.

- `TargetError`: the target cannot be checked at all (it cannot be imported or built, its
  declaration is incomplete or inconsistent, an option is invalid). Exit status 2, one line.
- `TargetRaised`: the target raised on valid input. The check's outcome is ``error``.
- `WrongOutput`: the target returned something that is not the documented output (wrong
  shape, not floating point, a dtype coarser than declared). The check's outcome is ``fail``.
- `InternalError`: ddpm-verify itself failed. Exit status 3, one line naming the file the
  traceback was written to.
"""

from __future__ import annotations


def one_line(exc: BaseException, limit: int = 300) -> str:
    """'TypeError: message' on one line, at most `limit` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class TargetError(Exception):
    """The target cannot be checked (exit status 2)."""


class TargetRaised(Exception):
    """The target raised `cause` in `operation` on the input described by `where` (e.g. 't = 17')."""

    def __init__(self, operation: str, where: str, cause: BaseException, traceback: str = ""):
        self.operation, self.where, self.cause, self.traceback = operation, where, cause, traceback
        super().__init__(f"{operation} raised {one_line(cause)}{f' ({where})' if where else ''}")


class WrongOutput(Exception):
    """The target's `operation` returned an output that breaks the documented contract."""

    def __init__(self, operation: str, message: str):
        self.operation = operation
        super().__init__(f"{operation} returned {message}")


class InternalError(Exception):
    """A bug in ddpm-verify (exit status 3); `context` says where it happened."""

    def __init__(self, context: str, cause: BaseException):
        self.context, self.cause = context, cause
        super().__init__(f"{context}: {one_line(cause)}")
