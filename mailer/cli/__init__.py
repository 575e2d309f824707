"""The ``mailer`` command: one click group, thin commands per area over the stages that do the work.

Importing this package registers every command on :data:`cli`; ``main`` is the console script.
"""

from mailer.cli import (
    apikeys,
    contacts,
    feedback,
    forget,
    gifts,
    inbox,
    notify,
    passes,
    project,
    serve,
    sync,
    templates,
    watch,
)
from mailer.cli.app import cli, main

__all__ = [
    "apikeys", "cli", "contacts", "feedback", "forget", "gifts", "inbox", "main", "notify", "passes", "project",
    "serve", "sync", "templates", "watch",
]
