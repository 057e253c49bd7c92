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


class UserError(Exception):
    """A mistake in the input or the environment that the user can fix; never a bug."""


class InputError(UserError, ValueError):
    """A command-line argument or function argument with a value outside what is allowed."""


class MissingDependency(UserError, ImportError):
    """An optional package (or a system library it needs) is not installed; names what to
    install."""


class WriteError(UserError, OSError):
    """A file that could not be written (disk full, no permission); what was there before is
    left as it was."""
