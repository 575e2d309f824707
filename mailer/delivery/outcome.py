"""One claimed row over one transport: send it, and turn what the relay said into the row's status.

2xx sent; 4xx and failures before the end of DATA retried with backoff; 5xx bounced (a
5.1.x no-such-user suppresses the address); a failure after the final dot ``unknown``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select, update
from sqlmodel import Session, col

from mailer.compose.maker import MessageMaker
from mailer.compose.message import HeaderError
from mailer.compose.render import RenderError
from mailer.compose.returnpath import envelope_sender
from mailer.config import Settings
from mailer.contacts import softbounces
from mailer.delivery.transport import Outcome, SendResult, Stage, Transport, WireTransport
from mailer.outbox import claims, gifts
from mailer.outbox.feedback import NOTICE_KIND
from mailer.outbox.retry import retry_at, span
from mailer.planning.occasions import noon
from mailer.store import events
from mailer.store.tables import Customer, SendLog, SendStatus

log = logging.getLogger(__name__)

def final_status(result: SendResult) -> tuple[SendStatus, str] | None:
    """The row's status and reason for what the relay said; None for a temporary failure (retry or give up).

    The one mapping from an attempt's outcome to a send-log status, for real sends and test sends alike.
    """
    if result.outcome is Outcome.DELIVERED:
        return SendStatus.SENT, "delivered"
    if result.outcome is Outcome.PERMANENT:
        return SendStatus.BOUNCED, f"bounced: {result.reply}"
    if result.outcome is Outcome.UNKNOWN:
        return SendStatus.UNKNOWN, f"unknown: {result.reply}"
    if result.outcome is Outcome.IMPOSSIBLE:
        return SendStatus.FAILED, f"failed: {result.reply}"
    return None


class Deliverer:
    """Sends claimed send-log rows over one transport, recording each outcome.

    One per sending thread (a transport is one connection); the message maker may be shared.
    """

    def __init__(
        self, settings: Settings, maker: MessageMaker, transport: Transport, *, pass_day: date | None = None
    ) -> None:
        self.settings = settings
        self.maker = maker
        self.transport = transport
        # The transport again if it takes prepared bytes; asked once, because an isinstance check
        # against a runtime Protocol inspects each of its attributes every time.
        self.wire: WireTransport | None = transport if isinstance(transport, WireTransport) else None
        self.pass_day = pass_day  # a pass that stands for a day: delivered customers count as emailed on it

    def deliver(self, session: Session, row_id: int, claimer: int, now: Callable[[], datetime]) -> Delivery:
        """Send one row that ``claimer`` has claimed (and committed) as ``sending``; record the outcome.

        The Message-ID and subject are committed before the SMTP transaction,
        so a row that a crash leaves ``unknown`` can be looked up at the relay.
        """
        row = session.get(SendLog, row_id, populate_existing=True)
        assert row is not None
        # Re-read, not the identity map's copy: an unsubscribe may have landed since the pass planned.
        customer = session.get(Customer, row.customer_id, populate_existing=True)
        assert customer is not None
        to_address = self.maker.recipient(row, customer)
        to_customer = row.occasion_kind != NOTICE_KIND  # an owner's notice is staff mail: opt-outs do not stop it
        if to_customer and (customer.suppressed_at or customer.unsubscribed_at):
            why = "suppressed" if customer.suppressed_at else "unsubscribed"
            return self._finish(session, row_id, claimer, SendStatus.SKIPPED, f"{why} before delivery", now())
        if claims.left_campaign(session, customer.id or 0, row.campaign):
            reason = "opted out of campaign before delivery"
            return self._finish(session, row_id, claimer, SendStatus.SKIPPED, reason, now())
        try:
            msg = self.maker.compose(row, customer)
        except (RenderError, HeaderError) as exc:
            return self._finish(session, row_id, claimer, SendStatus.FAILED, f"render error: {exc}", now())
        noted = {"subject": str(msg["Subject"]), "message_id": str(msg["Message-ID"]), "to_address": to_address}
        noted["locale"] = self.maker.locale_for(row, customer)
        if not claims.finish(session, row_id, claimer, noted):
            session.rollback()
            return Delivery("lost", None)
        session.commit()
        result = self.transport.send(envelope_sender(self.settings.sender, noted["message_id"]), to_address, msg)
        assert row.id is not None and customer.id is not None and row.first_attempt_at is not None
        attempt = Attempt(
            row.id, customer.id, row.attempts, row.first_attempt_at, customer.timezone, to_customer=to_customer
        )
        return self.record_result(session, attempt, claimer, result, now())

    def record_result(
        self,
        session: Session,
        attempt: Attempt,
        claimer: int,
        result: SendResult,
        now: datetime,
        *,
        commit: bool = True,
    ) -> Delivery:
        """Write the outcome of the row's SMTP transaction; ``commit=False`` leaves the commit to the caller."""
        finish = functools.partial(self._finish, commit=commit)
        # Only a retry has a next attempt; every other outcome is final.
        extra: dict[str, object] = {"last_reply": result.reply[:1000], "next_attempt_at": None}
        settled = final_status(result)
        if settled is not None:
            status, reason = settled
            if status == SendStatus.SENT and attempt.to_customer:  # the frequency cap counts mail the customer got
                claims.mark_emailed(session, attempt.customer_id, self._emailed_at(attempt, now))
                extra["sent_at"] = now
            if result.user_unknown and attempt.to_customer:  # a staff address bouncing says nothing of the customer
                session.execute(
                    update(Customer)
                    .where(col(Customer.id) == attempt.customer_id, col(Customer.suppressed_at).is_(None))
                    .values(suppressed_at=now, suppressed_reason=f"hard bounce: {result.reply[:200]}", updated_at=now)
                )
            return finish(session, attempt.row_id, claimer, status, reason, now, extra, result)
        transport = self.settings.transport
        first = attempt.first_attempt_at
        again = retry_at(first, attempt.attempts, now, transport.retry_initial, transport.retry_max_age)
        if again is None:
            if result.stage is Stage.RCPT and result.code is not None and 400 <= result.code < 500:
                self._soft_bounce(session, attempt, result, now)
            reason = f"gave up after {attempt.attempts} attempts in {span(now - first)}: {result.reply}"
            return finish(session, attempt.row_id, claimer, SendStatus.FAILED, reason, now, extra, result)
        extra["next_attempt_at"] = again
        reason = f"retrying: {result.reply}"
        return finish(session, attempt.row_id, claimer, SendStatus.QUEUED, reason, now, extra, result)

    def _emailed_at(self, attempt: Attempt, now: datetime) -> datetime:
        """When the frequency cap counts the customer emailed: ``now``, or noon of the pass's day in their zone.

        The zone comes with the attempt (read with the row for rendering, seconds before): one
        query less per message than reading it back from the store.
        """
        if self.pass_day is None:
            return now
        return noon(self.pass_day, attempt.timezone or self.settings.sender.timezone)

    def _soft_bounce(self, session: Session, attempt: Attempt, result: SendResult, now: datetime) -> None:
        """A recipient refused with 4xx at RCPT until the retries ran out: one transient failure of this message.

        Enough of them within the span suppress every customer with the address (in the caller's transaction).
        """
        message_id, to_address = session.execute(
            select(col(SendLog.message_id), col(SendLog.to_address)).where(col(SendLog.id) == attempt.row_id)
        ).one()
        if not to_address:
            return  # never claimed with an address: nothing was refused
        key = f"msg:{(message_id or '').strip('<>') or f'row {attempt.row_id}'}"
        detail = result.reply.removeprefix(str(result.code)).strip()[:200]
        rule = self.settings.soft_bounces
        why = softbounces.count(session, to_address, key, str(result.code), detail, now, rule)
        if why is not None:
            session.execute(
                update(Customer)
                .where(func.lower(col(Customer.email)) == to_address.lower(), col(Customer.suppressed_at).is_(None))
                .values(suppressed_at=now, suppressed_reason=why, updated_at=now)
            )
            log.info("%s suppressed: %s", to_address, why)

    def _finish(
        self,
        session: Session,
        row_id: int,
        claimer: int,
        status: SendStatus,
        reason: str,
        now: datetime,
        extra: dict[str, object] | None = None,
        result: SendResult | None = None,
        *,
        commit: bool = True,
    ) -> Delivery:
        values = {"status": status, "reason": reason[:1000], "updated_at": now, **(extra or {})}
        if not claims.finish(session, row_id, claimer, values):
            # Requeued by a human and claimed by another process meanwhile: its record wins.
            log.warning("send-log row %s was taken over while sending; its outcome here: %s", row_id, reason)
            session.rollback()
            return Delivery("lost", result)
        if status in gifts.ENDED_UNSEEN:  # the customer never saw its gift: the code goes back
            gifts.release(session, row_id, f"{status}: {reason}", now)
        if status in (SendStatus.SENT, SendStatus.BOUNCED, SendStatus.FAILED):  # for [[webhook]]s, same transaction
            events.record(session, str(status), send_log_id=row_id, data={"reason": reason[:1000]}, now=now)
        if commit:
            session.commit()
        return Delivery("retrying" if status == SendStatus.QUEUED else str(status), result)


@dataclass(frozen=True, slots=True)
class Attempt:
    """A claimed row's SMTP attempt, as its outcome is recorded: the row, its customer, and its attempts so far."""

    row_id: int
    customer_id: int
    attempts: int  # including this one
    first_attempt_at: datetime  # retries give up a fixed time after this
    timezone: str | None = None  # the customer's (None: the sender's), for a pass that stands for a day
    to_customer: bool = True  # False for an owner's notice: its delivery is not the customer's email


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one claimed row: the report's name for it, and the transport's result if it got that far."""

    outcome: str
    result: SendResult | None
