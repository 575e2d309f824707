"""The one exception type the CLI turns into a clean one-line error."""

from __future__ import annotations


class MailerError(Exception):
    """A problem the user can fix: bad config, bad input, a refused operation.

    The message is a complete, single line (``file:line: field: problem``
    where a location exists); the CLI prints it and exits with ``exit_status`` (2: fix your input).
    """

    exit_status = 2


class Unreachable(MailerError):
    """A server mailer needs could not be used right now (down, refused the login, failed TLS): exit status 1."""

    exit_status = 1
