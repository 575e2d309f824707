"""``GET /metrics`` on ``mailer serve``: the Prometheus exposition of mailer/service/metrics.py.

With ``[metrics] token_env``/``token_file`` set, a scrape must carry ``Authorization: Bearer <token>``
(Prometheus' ``authorization`` setting); without one, keep the path off the public side of the proxy.
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, request
from prometheus_client.exposition import choose_encoder
from sqlalchemy import Engine

from mailer.config import Settings
from mailer.service import metrics

PATH = "/metrics"


def mount(app: Flask, settings: Settings, engine: Engine) -> str:
    """Add ``/metrics`` to the app (unless ``[metrics] enabled = false``); a line saying where, or ""."""
    config = settings.watch.metrics
    if not config.enabled:
        return ""
    token = config.token.reveal() if config.token.is_set else None  # read now: a missing token fails at start
    registry = metrics.registry(engine, settings)

    def scrape() -> Response:
        if token is not None and not _bearer_matches(request.headers.get("Authorization", ""), token):
            return Response("a bearer token is required\n", status=401, mimetype="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="mailer metrics"'})
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(encoder(registry), content_type=content_type, headers={"Cache-Control": "no-store"})

    app.add_url_rule(PATH, "metrics", scrape, methods=["GET"])
    return f"Prometheus metrics at {PATH}" + (" (bearer token required)" if token else "")


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
