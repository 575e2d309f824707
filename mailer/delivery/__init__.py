"""Delivery: messages reach the relay, and what the relay said becomes the row's status.

Transports (SMTP, a maildir folder), throttling, the drain loop that claims and
sends due rows over several connections, and the outcome of each attempt.
"""
