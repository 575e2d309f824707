"""Provider webhooks on ``mailer serve``: Amazon SES (through SNS) and Mailgun report bounces,
complaints and unsubscribes over HTTP, and they become suppressions and unsubscribes.

    POST <[webhooks.ses] path>      an SNS message (SES feedback, or a subscription to confirm)
    POST <[webhooks.mailgun] path>  a Mailgun event webhook (JSON)

Answers, the same for both; a refused call changes nothing:

    200  acted on (or nothing to do, or already acted on: SNS retries until it gets a 2xx)
    400  not a message of that provider (broken JSON, missing fields)
    401  no signature at all
    403  a signature that does not verify, a certificate from a host not allowed, a topic not
         allowed, a timestamp too old (or too far ahead), a Mailgun token used before
    502  the SNS certificate or subscription link could not be fetched (SNS will try again)
    503  the store did not answer (the provider will try again)

An SNS message is believed only when its signature verifies against the certificate at its
``SigningCertURL``, fetched over verified TLS from an allowed host (``[webhooks.ses] cert_hosts``,
by default ``sns.<region>.amazonaws.com``) and cached; a subscription is confirmed (its
``SubscribeURL`` fetched) only for a topic in ``[webhooks.ses] topics``.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, request
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from mailer.config import ConfigError, MailgunHookSettings, SesHookSettings, Settings
from mailer.contacts import feedback, sns
from mailer.errors import MailerError
from mailer.service import webhooks
from mailer.store.tables import utcnow

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # SNS messages are at most 256 KiB
FETCH_LIMIT = 64 * 1024  # a PEM certificate is a few KiB; a confirmation answer is small XML
CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of our clock a provider's timestamp may be

Fetch = Callable[[str], bytes]


class FetchFailed(MailerError):
    """The certificate or the subscription link could not be fetched (502: SNS tries again)."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could lead off the allowed hosts; SNS serves certificates without one.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def https_fetcher(ca_file: Path | None = None, timeout: float = 10.0) -> Fetch:
    """GET an https URL with certificate and host name verified (``ca_file``: else the system's CAs).

    Raises ConfigError when ``ca_file`` cannot be read as CA certificates.
    """
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[webhooks.ses] ca_file: {ca_file}: {exc.strerror or exc}") from None
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirects())

    def fetch(url: str) -> bytes:
        try:
            with opener.open(urllib.request.Request(url, headers={"User-Agent": "mailer"}), timeout=timeout) as reply:
                data: bytes = reply.read(FETCH_LIMIT + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise FetchFailed(f"cannot fetch {url}: {getattr(exc, 'reason', exc)}") from None
        if len(data) > FETCH_LIMIT:
            raise FetchFailed(f"{url}: answer larger than {FETCH_LIMIT} bytes")
        return data

    return fetch


class SigningKeys:
    """SNS signing keys by certificate URL, fetched once and kept (SNS rotates them rarely)."""

    def __init__(self, fetch: Fetch, size: int = 16) -> None:
        self._fetch = fetch
        self._size = size
        self._keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, url: str, now: datetime) -> rsa.RSAPublicKey:
        with self._lock:
            if url in self._keys:
                self._keys.move_to_end(url)
                return self._keys[url]
        key = sns.public_key(self._fetch(url), now)  # outside the lock: a slow fetch stalls no other request
        with self._lock:
            self._keys[url] = key
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)
        return key


def _answer(status: int, text: str) -> Response:
    return Response(text.rstrip("\n") + "\n", status=status, mimetype="text/plain")


def _body() -> bytes:
    request.max_content_length = MAX_BODY  # the app's own limit is sized for a one-click POST
    return request.get_data(cache=False)


def mount(
    app: Flask,
    settings: Settings,
    engine: Engine,
    *,
    fetch: Fetch | None = None,
    now: Callable[[], datetime] = utcnow,
) -> list[str]:
    """Add the configured webhook routes to ``app``; returns a line per route for ``mailer serve`` to show.

    ``fetch`` gets the SNS certificate and subscription link (default: verified https with
    ``[webhooks.ses] ca_file``). The Mailgun key is read now: a missing one fails at start.
    """
    lines = []
    ses, mailgun = settings.webhooks.ses, settings.webhooks.mailgun
    if ses is not None:
        try:
            fetcher = fetch or https_fetcher(ses.ca_file)
        except ConfigError as exc:
            raise ConfigError(f"{settings.path.name}: {exc}") from None
        _mount_ses(app, ses, engine, fetcher, now)
        lines.append(f"Amazon SES (SNS) webhook at {ses.path}")
    if mailgun is not None:
        _mount_mailgun(app, mailgun, engine, now)
        lines.append(f"Mailgun webhook at {mailgun.path}")
    return lines


def _mount_ses(app: Flask, hook: SesHookSettings, engine: Engine, fetch: Fetch, now: Callable[[], datetime]) -> None:
    hosts = sns.host_pattern(hook.cert_hosts)
    keys = SigningKeys(fetch)
    topics = frozenset(hook.topics)

    def ses_webhook() -> Response:
        try:
            msg = sns.parse(_body())
        except sns.Malformed as exc:
            return _refused(400, "ses", str(exc))
        if not msg.fields.get("Signature") or not msg.signing_cert_url:
            return _refused(401, "ses", "no Signature or SigningCertURL")
        if msg.topic_arn not in topics:
            return _refused(403, "ses", f"topic {msg.topic_arn} is not in [webhooks.ses] topics")
        if not sns.certificate_url_allowed(msg.signing_cert_url, hosts):
            return _refused(403, "ses", f"SigningCertURL {msg.signing_cert_url} is not on an allowed host")
        moment = now()
        try:
            sns.verify(msg, keys.key(msg.signing_cert_url, moment))
        except FetchFailed as exc:
            return _refused(502, "ses", str(exc))
        except sns.BadSignature as exc:
            return _refused(403, "ses", str(exc))
        if not moment - hook.max_age <= msg.timestamp <= moment + CLOCK_SKEW:
            return _refused(403, "ses", f"message {msg.message_id} is from {msg.timestamp:%Y-%m-%d %H:%M:%S}Z")
        if msg.type == sns.SUBSCRIPTION_CONFIRMATION:
            return _confirm(msg, hosts, fetch)
        if msg.type == sns.UNSUBSCRIBE_CONFIRMATION:
            log.warning("ses webhook: %s unsubscribed this endpoint from %s", msg.message_id, msg.topic_arn)
            return _answer(200, "noted")
        return _notification(msg, engine, hook.max_age + CLOCK_SKEW, moment)

    app.add_url_rule(hook.path, "webhook_ses", ses_webhook, methods=["POST"])


def _confirm(msg: sns.SnsMessage, hosts: re.Pattern[str], fetch: Fetch) -> Response:
    """Subscribe this endpoint to the topic by fetching the SubscribeURL SNS signed."""
    if not sns.url_allowed(msg.subscribe_url, hosts):
        return _refused(403, "ses", f"SubscribeURL {msg.subscribe_url} is not on an allowed host")
    try:
        fetch(msg.subscribe_url)
    except FetchFailed as exc:
        return _refused(502, "ses", str(exc))
    log.info("ses webhook: subscription to %s confirmed", msg.topic_arn)
    return _answer(200, f"subscription to {msg.topic_arn} confirmed")


def _notification(msg: sns.SnsMessage, engine: Engine, keep: timedelta, moment: datetime) -> Response:
    try:
        reports = feedback.ses_feedback(msg.message)
    except sns.Malformed as exc:
        return _refused(400, "ses", f"message {msg.message_id}: {exc}")
    return _act(engine, "ses", msg.message_id, reports, keep, moment, replay_status=200)


def _mount_mailgun(app: Flask, hook: MailgunHookSettings, engine: Engine, now: Callable[[], datetime]) -> None:
    key = hook.signing_key.reveal()

    def mailgun_webhook() -> Response:
        try:
            call = feedback.mailgun_call(_body())
        except sns.Unsigned as exc:
            return _refused(401, "mailgun", str(exc))
        except sns.Malformed as exc:
            return _refused(400, "mailgun", str(exc))
        if not feedback.mailgun_signed(key, call):
            return _refused(403, "mailgun", "the signature does not match the signing key")
        moment = now()
        try:
            signed_at = datetime.fromtimestamp(int(call.timestamp), tz=moment.tzinfo)
        except (ValueError, OverflowError, OSError):
            return _refused(400, "mailgun", f"timestamp is not a Unix time: {call.timestamp!r}")
        if not moment - hook.max_age <= signed_at <= moment + CLOCK_SKEW:
            return _refused(403, "mailgun", f"stale signature from {signed_at:%Y-%m-%d %H:%M:%S}")
        try:
            report = feedback.mailgun_feedback(call.event)
        except sns.Malformed as exc:
            return _refused(400, "mailgun", str(exc))
        return _act(engine, "mailgun", call.token, [report], hook.max_age + CLOCK_SKEW, moment, replay_status=403)

    app.add_url_rule(hook.path, "webhook_mailgun", mailgun_webhook, methods=["POST"])


def _act(
    engine: Engine,
    provider: str,
    key: str,
    reports: list[feedback.Feedback],
    keep: timedelta,
    moment: datetime,
    *,
    replay_status: int,
) -> Response:
    """Act on the reports of one call, once: a second call with the same key changes nothing.

    SNS delivers a message again when it did not see our 200, so a repeat is answered 200;
    a Mailgun token is signed for one call, so its repeat is a replay and refused.
    """
    try:
        if not webhooks.first_receipt(engine, provider, key, moment, keep):
            if replay_status == 200:
                log.info("%s webhook: %s already handled", provider, key)
                return _answer(200, "already handled")
            return _refused(replay_status, provider, "this token was used before (a replayed call)")
        try:
            done = [webhooks.apply(engine, provider, report, moment) for report in reports]
        except SQLAlchemyError:
            webhooks.forget_receipt(engine, provider, key)
            raise
    except SQLAlchemyError as exc:
        log.error("%s webhook: store error: %s", provider, exc)
        response = _answer(503, "store unavailable, nothing changed; try again")
        response.headers["Retry-After"] = "60"
        return response
    for line in done:
        log.info("%s webhook: %s", provider, line)
    return _answer(200, "\n".join(done) or "nothing to do")


def _refused(status: int, provider: str, why: str) -> Response:
    log.warning("%s webhook: refused (%d) from %s: %s", provider, status, request.remote_addr, why)
    return _answer(status, why)
