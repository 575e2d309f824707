"""The preference page's wishes as pure policy steps: a campaign left is skipped, a pause defers."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from mailer.planning.policy import Decision, Verdict, decide
from tests.planning.test_policy import CAMPAIGNS, CUSTOMER, OPEN, POLICY, TODAY, occ

PAUSED = replace(CUSTOMER, paused_until=date(2026, 11, 25))
LEFT_ANNIVERSARY = replace(CUSTOMER, opted_out_of=frozenset({"anniversary"}))


def decided(customer: object, occasions: list[object], logged: dict[tuple[str, str], str] | None = None,
            today: date = TODAY) -> list[tuple[str, Verdict, str]]:
    moment = replace(OPEN, today=today)
    found: list[Decision] = decide(customer, occasions, CAMPAIGNS, logged or {}, moment, POLICY)  # type: ignore[arg-type]
    return sorted((d.occasion.key, d.verdict, d.reason) for d in found)


def test_an_occasion_of_a_campaign_the_customer_left_is_skipped_with_its_reason() -> None:
    assert decided(LEFT_ANNIVERSARY, [occ()]) == [("anniversary:2026", Verdict.SKIP, "opted out of campaign")]


def test_leaving_one_campaign_leaves_the_others_free_to_send() -> None:
    occasions = [occ(), occ("birthday", "birthday:2026")]
    assert decided(LEFT_ANNIVERSARY, occasions) == [
        ("anniversary:2026", Verdict.SKIP, "opted out of campaign"),
        ("birthday:2026", Verdict.SEND, "due"),
    ]


def test_a_left_campaign_does_not_take_the_pass_from_another() -> None:
    # The anniversary outranks nothing here, but the birthday (priority 40) must not be deferred for it.
    left_birthday = replace(CUSTOMER, opted_out_of=frozenset({"birthday"}))
    assert decided(left_birthday, [occ(), occ("birthday", "birthday:2026")]) == [
        ("anniversary:2026", Verdict.SEND, "due"),
        ("birthday:2026", Verdict.SKIP, "opted out of campaign"),
    ]


def test_a_pause_defers_every_occasion_with_the_day_mail_may_come_again() -> None:
    assert decided(PAUSED, [occ(), occ("birthday", "birthday:2026")]) == [
        ("anniversary:2026", Verdict.DEFER, "paused until 2026-11-25"),
        ("birthday:2026", Verdict.DEFER, "paused until 2026-11-25"),
    ]


def test_an_occasion_held_by_a_pause_is_sent_on_the_day_the_pause_ends() -> None:
    deferred = {("anniversary", "anniversary:2026"): "deferred"}
    assert decided(PAUSED, [occ()], deferred, today=date(2026, 11, 24))[0][1] is Verdict.DEFER
    assert decided(PAUSED, [occ()], deferred, today=date(2026, 11, 25)) == [("anniversary:2026", Verdict.SEND, "due")]


def test_a_pause_that_outlasts_catch_up_lets_the_occasion_expire_as_usual() -> None:
    long_pause = replace(CUSTOMER, paused_until=date(2027, 2, 23))
    deferred = {("anniversary", "anniversary:2026"): "deferred"}
    late = TODAY.replace(day=TODAY.day + POLICY.catch_up_days + 1)
    [decision] = decide(long_pause, [occ()], CAMPAIGNS, deferred, replace(OPEN, today=late), POLICY)
    assert (decision.verdict, decision.reason, decision.history) == (
        Verdict.SKIP, f"expired after {POLICY.catch_up_days + 1} days deferred", True,
    )


def test_a_pause_that_is_over_changes_nothing() -> None:
    over = replace(CUSTOMER, paused_until=TODAY)
    assert decided(over, [occ()]) == [("anniversary:2026", Verdict.SEND, "due")]


def test_unsubscribed_and_suppressed_come_before_the_finer_wishes() -> None:
    both = replace(LEFT_ANNIVERSARY, unsubscribed=True, paused_until=date(2027, 1, 1))
    assert decided(both, [occ()]) == [("anniversary:2026", Verdict.SKIP, "unsubscribed")]
    gone = replace(PAUSED, suppressed=True)
    assert decided(gone, [occ()]) == [("anniversary:2026", Verdict.SKIP, "suppressed")]


def test_leaving_a_campaign_outranks_a_pause_so_its_occasions_are_not_kept_waiting() -> None:
    both = replace(LEFT_ANNIVERSARY, paused_until=date(2027, 1, 1))
    assert decided(both, [occ()]) == [("anniversary:2026", Verdict.SKIP, "opted out of campaign")]
