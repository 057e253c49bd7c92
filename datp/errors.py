"""The errors a user can act on, as opposed to bugs.

Every error caused by what the user gave (a file, a flag, a config value, a missing optional
package) derives from :class:`UserError`. The ``datp`` command line is the one place that turns
them into ``error: <message>`` (exit status 2); any other exception is a bug and keeps its
traceback. Each subclass also derives from the built-in type callers already expect
(``ValueError``, ``ImportError``), so library users can catch either.

A message names the file, key or value at fault first, then the problem, on one line where it
can (``DataError`` lists one problem per line when a pass finds several).
"""

from __future__ import annotations

WORKER_TRACEBACK = "Original Traceback (most recent call last):"


def message_from_worker(text: str) -> str:
    """The original message of an error re-raised from a DataLoader worker process.

    torch rebuilds such an exception from text, ``Caught X in DataLoader worker process k.``,
    the worker's traceback, and last the original ``module.X: message``: that last part is what
    the user needs. Other text is returned as it is.
    """
    if WORKER_TRACEBACK not in text:
        return text
    # The last traceback is the error's own; earlier ones are its causes.
    last = text.split(WORKER_TRACEBACK, 1)[1].split("Traceback (most recent call last):")[-1]
    lines = last.strip("\n").splitlines()
    for i, line in enumerate(lines):
        if line and not line[0].isspace():  # the first line after the indented frames
            head, _, rest = line.partition(": ")
            return "\n".join([rest if rest else head, *lines[i + 1:]]).strip()
    return text


class UserError(Exception):
    """A mistake in the input or the environment that the user can fix; never a bug."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (message_from_worker(args[0]),)
        super().__init__(*args)


class InputError(UserError, ValueError):
    """A command-line argument or function argument with a value outside what is allowed."""


class MissingDependency(UserError, ImportError):
    """An optional package (or a system library it needs) is not installed; names what to
    install."""


class WriteError(UserError, OSError):
    """A file that could not be written (disk full, no permission); what was there before is
    left as it was."""


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
