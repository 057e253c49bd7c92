"""The one error type of the data pipeline: bad input, named by file (and line) and problem."""

from __future__ import annotations

from datp.errors import UserError, message_from_worker


class DataError(UserError, ValueError):
    """A dataset file that cannot be used: unreadable, truncated, empty, missing or malformed.

    ``problems`` holds one line per problem ("path:line: what is wrong"), so a reader that finds
    several problems in one pass reports all of them at once (``datp check`` relies on this).
    """

    def __init__(self, problems: str | list[str], *, partial: object | None = None) -> None:
        if isinstance(problems, str):  # one problem, or a DataError re-raised from a worker
            problems = message_from_worker(problems).splitlines() or [problems]
        self.problems = list(problems)
        self.partial = partial
        """What could be read despite the problems (a reader's ``Split``), or None."""
        if not self.problems:
            raise ValueError("DataError needs at least one problem")
        shown = self.problems[:20]
        more = len(self.problems) - len(shown)
        message = "\n".join(shown) + (f"\n... and {more} more problems" if more > 0 else "")
        super().__init__(message)
