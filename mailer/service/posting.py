"""POSTing JSON to a URL someone configured (alert webhooks, event webhooks): verified TLS, no redirects."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from mailer.errors import MailerError


class PostFailed(MailerError):
    """The receiver could not be reached or did not answer 2xx; the message says which, in one line."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would resend a signed body somewhere nobody configured.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def post_json(url: str, body: bytes, *, headers: dict[str, str] | None = None, timeout: float = 10.0,
              ca_file: Path | None = None) -> int:
    """POST ``body`` as application/json; returns the 2xx status, raises PostFailed otherwise.

    https URLs are verified against the system's CAs (or ``ca_file``); the URL itself is never
    put in an error (a Slack webhook URL is a secret), only its host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PostFailed("the configured URL is not an http(s) URL")
    where = parts.hostname
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirects)
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "mailer", **(headers or {})},
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            raise PostFailed(f"{where} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PostFailed(f"cannot reach {where}: {reason}") from None
