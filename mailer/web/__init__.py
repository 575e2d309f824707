"""Web: what people reach over HTTP.

The unsubscribe endpoint (RFC 8058 one-click and a confirmation page), and the
template preview page with the test send.
"""
