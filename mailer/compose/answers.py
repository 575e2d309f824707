"""The question an email asks ("how did we do?") and the notice an unhappy answer sends to a person.

A campaign with ``ask = "rating"`` gives its template an ``ask`` variable: one
answer per step of the campaign's ``scale``, each with its own signed link
(:func:`mailer.compose.tokens.make_answer_token`) naming the send-log row and
the answer. A campaign that asks nothing gets an ``ask`` with no answers, so
one template serves both.

The notice is an ordinary send-log row of the reserved campaign
:data:`mailer.outbox.feedback.NOTICE_CAMPAIGN`: it goes to the customer's account owner (else the
company's reply-to), with Reply-To set to the customer so that answering it
reaches them straight away, and without List-Unsubscribe (it is staff mail; an
unsubscribe button there would opt the *customer* out).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailer.compose.context import company_view
from mailer.compose.message import Envelope
from mailer.compose.tokens import make_answer_token
from mailer.config import Campaign, SenderSettings
from mailer.outbox.feedback import notice_recipient
from mailer.store.tables import Customer

ANSWER_PAGE = "_pages/answer.html"  # the answer page marketers edit, beside the email templates

NO_QUESTION: dict[str, Any] = {"question": "", "answers": [], "scale": 0}


def answer_path(token: str) -> str:
    return f"/a/{token}"


def ask_view(campaign: Campaign | None, links: list[str]) -> dict[str, Any]:
    """The ``ask`` variable: the campaign's answers, worst first, each with its link (``links[n - 1]``)."""
    if campaign is None or not campaign.ask:
        return NO_QUESTION
    answers = [
        {"value": n, "label": label, "url": url, "words": answer_words(campaign, n)}
        for n, (label, url) in enumerate(zip(campaign.scale, links, strict=True), start=1)
    ]
    return {"question": "How did we do?", "answers": answers, "scale": len(campaign.scale)}


def answer_words(campaign: Campaign, answer: int) -> str:
    """How an answer reads to a person (and a screen reader): "4 out of 5", or its label."""
    label = campaign.scale[answer - 1]
    return f"{label} out of {len(campaign.scale)}" if label.isdigit() else label


def answer_links(secret: str, base_url: str, campaign: Campaign, row_id: int, issued: datetime) -> list[str]:
    """One signed link per answer of ``campaign`` for the send-log row ``row_id``."""
    return [
        base_url + answer_path(make_answer_token(secret, row_id, n, issued))
        for n in range(1, len(campaign.scale) + 1)
    ]


def find_campaign(campaigns: tuple[Campaign, ...], name: str) -> Campaign | None:
    """The configured campaign of a send-log row; None when it has left mailer.toml since (it asks nothing now)."""
    return next((c for c in campaigns if c.name == name), None)


def notice_envelope(customer: Customer, sender: SenderSettings, reference: str) -> Envelope:
    """To the owner; a reply goes to the customer; no unsubscribe headers (this is staff mail)."""
    name = " ".join(p for p in (customer.first_name, customer.last_name) if p)
    return Envelope(
        to_address=notice_recipient(customer, sender),
        to_name=(customer.owner_name or "") if customer.owner_email else "",
        reply_to=customer.email,
        reply_to_name=name,
        unsubscribe_url="",
        reference=reference,
    )


def sample_ask(campaign: Campaign | None, base_url: str) -> dict[str, Any]:
    """An ``ask`` for previews and checks: the campaign's own scale, or 1 to 5 when it asks nothing."""
    if campaign is None or not campaign.ask:
        campaign = SAMPLE_CAMPAIGN
    links = [f"{base_url}{answer_path(f'SAMPLE-{n}')}" for n in range(1, len(campaign.scale) + 1)]
    return ask_view(campaign, links)


def handled_path(token: str) -> str:
    return f"/feedback/{token}"


# The answer page's variables (templates/email/_pages/answer.html), for the checker and the preview.
PAGE_VARIABLES = {
    "company": "your business, as in emails: name, postal_address, website, from_address",
    "customer": "first_name only (the page is reached by a link anyone may forward)",
    "question": 'the question: "How did we do?"',
    "about": "the subject of the email that asked",
    "answers": "the answers, worst first: value, label, words, selected",
    "comment": "the comment given so far",
    "action": "where the form posts (keep it)",
    "stamp": 'the hidden form field that proves the page is ours (keep `<input type="hidden" name="stamp">`)',
    "thanks": "true after Send: the page thanks them and offers to change the answer",
}


def page_context(
    sender: SenderSettings,
    campaign: Campaign,
    *,
    first_name: str,
    about: str,
    selected: int,
    comment: str,
    action: str,
    stamp: str,
    thanks: bool,
) -> dict[str, Any]:
    """What the answer page is rendered with (the web endpoint, the preview and the checker alike)."""
    return {
        "company": company_view(sender),
        "customer": {"first_name": first_name},
        "question": "How did we do?",
        "about": about,
        "answers": [
            {"value": n, "label": label, "words": answer_words(campaign, n), "selected": n == selected}
            for n, label in enumerate(campaign.scale, start=1)
        ],
        "comment": comment,
        "action": action,
        "stamp": stamp,
        "thanks": thanks,
    }


SAMPLE_CAMPAIGN = Campaign("sample", "follow_up", "follow_up", ask="rating", scale=("1", "2", "3", "4", "5"))


def page_samples(sender: SenderSettings, campaigns: list[Campaign]) -> list[dict[str, Any]]:
    """The answer page as a customer first sees it and after Send, for each scale in use."""
    samples = []
    for campaign in campaigns or [SAMPLE_CAMPAIGN]:
        for thanks in (False, True):
            samples.append(
                page_context(
                    sender, campaign, first_name="Amelia", about="How was your order ORD-10482?",
                    selected=len(campaign.scale), comment="Lovely beans, quick delivery." if thanks else "",
                    action="/a/SAMPLE-TOKEN", stamp="SAMPLE-STAMP", thanks=thanks,
                )
            )
    return samples
