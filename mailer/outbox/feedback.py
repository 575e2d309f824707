"""Answers to "how did we do?" in the store, and the owner's notice an unhappy one queues.

An answer is one ``feedback`` row per send-log row (the message that asked);
answering again updates it. When an answer turns unhappy (at or below the
campaign's ``unhappy_at_most``, or any comment with ``[feedback]
comment_is_unhappy``) the row is marked ``unhappy_since`` and, in the same
transaction, a notice is queued in the send log like any other message: the
reserved campaign :data:`NOTICE_CAMPAIGN`, key ``feedback:<id>:<n>``, so the
log's UNIQUE key makes it exactly once, and the retry sweep delivers (and
retries) it. Sending the same unhappy answer again queues nothing more; while
the notice is still waiting to go, it is refreshed with the latest answer and
comment. A changed, happier answer keeps the pause: a person was told, and a
person says when it is handled (``mailer feedback resolve``, or the signed
link in the notice), unless ``[policy] unhappy_pause_days`` pass first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from mailer.config import Campaign, FeedbackSettings, SenderSettings
from mailer.store.tables import Customer, Feedback, Interaction, SendLog, SendStatus

NOTICE_CAMPAIGN = "feedback:notice"  # a ':' no configured campaign name may hold, so they never clash
NOTICE_KIND = "feedback_notice"
NOTICE_TEMPLATE = "feedback_notice"
MAX_COMMENT = 4000  # characters kept of a comment (the form allows as many)
RECENT = 5  # interactions and emails shown in a notice


class Source(StrEnum):
    PAGE = "page"  # the Send button of the answer page
    CLICK = "click"  # the link itself ([feedback] count_clicks), when it did not look like a scanner


@dataclass(frozen=True, slots=True)
class Asked:
    """The message that asked, as the answer page needs it."""

    row_id: int
    customer_id: int
    campaign: str
    subject: str
    first_name: str
    answer: int | None  # the answer already given, if any
    comment: str


@dataclass(frozen=True, slots=True)
class Answered:
    feedback_id: int
    created: bool  # the first answer to this message
    notice_row_id: int | None  # the owner's notice queued by this answer


def unhappy(campaign: Campaign, settings: FeedbackSettings, answer: int, comment: str) -> bool:
    """PURE: whether an answer goes to a person."""
    return answer <= campaign.unhappy_at_most or (settings.comment_is_unhappy and bool(comment.strip()))


def notice_recipient(customer: Customer, sender: SenderSettings) -> str:
    """Who hears about an unhappy answer: the customer's account owner, else the company's reply-to."""
    return customer.owner_email or sender.reply_to or sender.from_address


def asked(engine: Engine, row_id: int) -> Asked | None:
    """The send-log row an answer link names (with the answer given so far); None if there is no such row."""
    with Session(engine) as session:
        found = session.execute(
            select(
                col(SendLog.id), col(SendLog.customer_id), col(SendLog.campaign), col(SendLog.subject),
                col(Customer.first_name), col(Feedback.answer), col(Feedback.comment),
            )
            .join(Customer, col(Customer.id) == col(SendLog.customer_id))
            .outerjoin(Feedback, col(Feedback.send_log_id) == col(SendLog.id))
            .where(col(SendLog.id) == row_id, col(SendLog.is_test).is_(False))
        ).first()
    if found is None:
        return None
    rid, customer_id, campaign, subject, first_name, answer, comment = found
    return Asked(rid, customer_id, campaign, subject, first_name or "", answer, comment or "")


def record_answer(
    engine: Engine,
    question: Asked,
    campaign: Campaign,
    answer: int,
    comment: str,
    source: Source,
    now: datetime,
    settings: FeedbackSettings,
    sender: SenderSettings,
) -> Answered:
    """Store (or change) the answer to ``question``; queue the owner's notice if it turned unhappy. One commit.

    ``answer`` must be on the campaign's scale (ValueError otherwise: the caller validated the form).
    """
    if not 1 <= answer <= len(campaign.scale):
        raise ValueError(f"answer {answer} is not on the scale 1-{len(campaign.scale)}")
    comment = comment.strip()[:MAX_COMMENT]
    values: dict[str, Any] = {
        "answer": answer,
        "scale": len(campaign.scale),
        "label": campaign.scale[answer - 1],
        "comment": comment,
        "source": str(source),
        "answered_at": now,
    }
    for _ in range(2):  # a second try only when another request inserted the first answer meanwhile
        with Session(engine, expire_on_commit=False) as session:
            row = session.execute(
                select(Feedback).where(col(Feedback.send_log_id) == question.row_id).with_for_update()
            ).scalar_one_or_none()
            created = row is None
            if row is None:
                row = Feedback(customer_id=question.customer_id, send_log_id=question.row_id, campaign=campaign.name,
                               **values)
            else:
                for key, value in values.items():
                    setattr(row, key, value)
            notice = None
            if unhappy(campaign, settings, answer, comment) and row.unhappy_since is None:
                row.unhappy_since, row.resolved_at, row.resolved_by = now, None, ""
                row.notices += 1
                notice = row.notices
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                continue
            assert row.id is not None
            notice_id = None
            if notice is not None:
                notice_id = _queue_notice(session, row, question, notice, now, sender)
            elif row.unhappy_since is not None:
                _refresh_waiting_notice(session, row, question)
            session.commit()
            return Answered(row.id, created, notice_id)
    raise RuntimeError("the answer could be neither inserted nor updated")  # two racing inserts cannot both lose


def _notice_details(session: Session, row: Feedback, question: Asked) -> dict[str, Any]:
    """What the owner's notice says, as it is when the answer comes in (the notice shows that moment)."""
    interactions = session.execute(
        select(col(Interaction.kind), col(Interaction.occurred_at), col(Interaction.reference), col(Interaction.amount))
        .where(col(Interaction.customer_id) == row.customer_id)
        .order_by(col(Interaction.occurred_at).desc(), col(Interaction.id).desc())
        .limit(RECENT)
    ).all()
    emails = session.execute(
        select(col(SendLog.sent_at), col(SendLog.subject), col(SendLog.campaign))
        .where(
            col(SendLog.customer_id) == row.customer_id,
            col(SendLog.status) == SendStatus.SENT,
            col(SendLog.campaign) != NOTICE_CAMPAIGN,
            col(SendLog.is_test).is_(False),
        )
        .order_by(col(SendLog.sent_at).desc(), col(SendLog.id).desc())
        .limit(RECENT)
    ).all()
    words = f"{row.label} out of {row.scale}" if row.label.isdigit() else row.label
    return {
        "feedback_id": row.id,
        "answer": row.answer,
        "label": row.label,
        "words": words,
        "scale": row.scale,
        "comment": row.comment,
        "answered_at": row.answered_at.isoformat(),
        "asked_campaign": row.campaign,
        "asked_subject": question.subject,
        "asked_about": session.execute(
            select(col(SendLog.occasion_key)).where(col(SendLog.id) == row.send_log_id)
        ).scalar_one(),
        "interactions": [
            {"kind": kind, "date": at.date().isoformat(), "reference": reference or "",
             "amount": "" if amount is None else str(amount)}
            for kind, at, reference, amount in interactions
        ],
        "emails": [
            {"date": at.date().isoformat() if at else "", "subject": subject, "campaign": campaign}
            for at, subject, campaign in emails
        ],
    }


def _queue_notice(
    session: Session, row: Feedback, question: Asked, number: int, now: datetime, sender: SenderSettings
) -> int:
    customer = session.get(Customer, row.customer_id)
    assert customer is not None
    to_address = notice_recipient(customer, sender)
    notice = SendLog(
        customer_id=row.customer_id,
        campaign=NOTICE_CAMPAIGN,
        occasion_key=f"feedback:{row.id}:{number}",
        occasion_kind=NOTICE_KIND,
        due_date=now.date(),
        occasion=_notice_details(session, row, question),
        template=NOTICE_TEMPLATE,
        status=SendStatus.QUEUED,
        reason=f"unhappy feedback ({row.answer} of {row.scale}): telling {to_address}",
        to_address=to_address,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(notice)
    session.flush()
    assert notice.id is not None
    return notice.id


def _refresh_waiting_notice(session: Session, row: Feedback, question: Asked) -> None:
    """A notice not yet claimed for sending shows the latest answer and comment, not the first click."""
    session.execute(
        update(SendLog)
        .where(
            col(SendLog.customer_id) == row.customer_id,
            col(SendLog.campaign) == NOTICE_CAMPAIGN,
            col(SendLog.occasion_key) == f"feedback:{row.id}:{row.notices}",
            col(SendLog.status) == SendStatus.QUEUED,
            col(SendLog.attempts) == 0,
        )
        .values(occasion=_notice_details(session, row, question))
    )


class Resolution(StrEnum):
    RESOLVED = "resolved"
    ALREADY = "already handled"
    UNKNOWN = "no such feedback"


def resolve(engine: Engine, feedback_id: int, by: str, now: datetime) -> Resolution:
    """Mark an unhappy answer handled: appreciation to the customer resumes with the next pass."""
    with Session(engine) as session:
        changed = session.execute(
            update(Feedback)
            .where(col(Feedback.id) == feedback_id, col(Feedback.unhappy_since).is_not(None))
            .values(unhappy_since=None, resolved_at=now, resolved_by=by[:200])
            .returning(col(Feedback.id))
        ).first()
        session.commit()
        if changed:
            return Resolution.RESOLVED
        exists = session.execute(select(col(Feedback.id)).where(col(Feedback.id) == feedback_id)).first()
    return Resolution.ALREADY if exists else Resolution.UNKNOWN
