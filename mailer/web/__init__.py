"""Web: what people reach over HTTP.

The unsubscribe endpoint (RFC 8058 one-click and a confirmation page), the
template preview page with the test send, and the provider webhooks (Amazon SES
through SNS, Mailgun) that report bounces, complaints and unsubscribes.
"""
