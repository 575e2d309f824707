"""Compose: a send-log row and its customer become a message.

Template context and rendering (sandboxed Jinja, CSS inlined), the one message
writer (headers and wire bytes), signed tokens and Message-IDs, DKIM, the
templates check, and the pool of composer processes that renders ahead.
"""
