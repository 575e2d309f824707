"""The one exception type the CLI turns into a clean one-line error."""

from __future__ import annotations


class MailerError(Exception):
    """A problem the user can fix: bad config, bad input, a refused operation.

    The message is a complete, single line (``file:line: field: problem``
    where a location exists); the CLI prints it and exits with status 2.
    """
