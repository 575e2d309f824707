"""The pure policy, step by step, in the order of SPEC §4."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from mailer.config import Campaign, PolicySettings
from mailer.planning.occasions import CustomerFacts, Occasion
from mailer.planning.policy import PassMoment, Verdict, decide, in_send_window

TODAY = date(2026, 11, 23)  # a Monday
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
POLICY = PolicySettings(min_days_between=7, catch_up_days=3, weekdays=(0, 1, 2, 3, 4))
CUSTOMER = CustomerFacts(1, "C1", "c1@example.com", date(2020, 11, 23), "UTC")
CAMPAIGNS = {
    "anniversary": Campaign("anniversary", "anniversary", "anniversary", priority=30),
    "birthday": Campaign("birthday", "birthday", "birthday", priority=40),
    "staff": Campaign("staff", "anniversary", "staff_anniversary", tags_any=frozenset({"staff"})),
    "spend": Campaign("spend", "milestone", "milestone", metric="lifetime_spend", thresholds=(500.0, 1000.0)),
}
OPEN = PassMoment(TODAY, None, window_open=True)


def occ(campaign: str = "anniversary", key: str = "anniversary:2026", due: date = TODAY, **kw: object) -> Occasion:
    return Occasion(1, campaign, CAMPAIGNS[campaign].occasion, key, due, **kw)  # type: ignore[arg-type]


def verdicts(customer: CustomerFacts = CUSTOMER, occasions: list[Occasion] | None = None,
             logged: dict[tuple[str, str], str] | None = None, moment: PassMoment = OPEN,
             policy: PolicySettings = POLICY) -> list[tuple[str, Verdict, str]]:
    found = decide(customer, occasions or [occ()], CAMPAIGNS, logged or {}, moment, policy)
    return sorted((d.occasion.key, d.verdict, d.reason.split(":")[0]) for d in found)


@pytest.mark.parametrize(
    ("case", "customer", "occasions", "logged", "expected"),
    [
        ("a due occasion is sent", CUSTOMER, None, None, [("anniversary:2026", Verdict.SEND, "due")]),
        ("settled occasions get no decision", CUSTOMER, None, {("anniversary", "anniversary:2026"): "sent"}, []),
        ("a queued occasion is not decided again", CUSTOMER, None, {("anniversary", "anniversary:2026"): "queued"}, []),
        ("a deferred occasion is decided again", CUSTOMER, None, {("anniversary", "anniversary:2026"): "deferred"},
         [("anniversary:2026", Verdict.SEND, "due")]),
        ("at most catch_up_days late is still sent", CUSTOMER, [occ(due=date(2026, 11, 20))], None,
         [("anniversary:2026", Verdict.SEND, "due")]),
        ("later than catch-up is skipped as expired", CUSTOMER, [occ(due=date(2026, 11, 19))], None,
         [("anniversary:2026", Verdict.SKIP, "expired")]),
        ("a moot occasion is skipped with its reason, not sent", CUSTOMER,
         [occ(moot="ended: an interaction on 2026-11-22 broke the silence")], None,
         [("anniversary:2026", Verdict.SKIP, "ended")]),
        ("a moot occasion does not take the pass from a live one", CUSTOMER,
         [occ(moot="ended: gone"), occ("birthday", "birthday:2026")], None,
         [("anniversary:2026", Verdict.SKIP, "ended"), ("birthday:2026", Verdict.SEND, "due")]),
        ("suppressed is skipped", replace(CUSTOMER, suppressed=True), None, None,
         [("anniversary:2026", Verdict.SKIP, "suppressed")]),
        ("unsubscribed is skipped", replace(CUSTOMER, unsubscribed=True), None, None,
         [("anniversary:2026", Verdict.SKIP, "unsubscribed")]),
        ("outside the segment nothing is logged", CUSTOMER, [occ("staff")], None, []),
        ("tags_any admits staff", replace(CUSTOMER, tags=frozenset({"staff"})), [occ("staff")], None,
         [("anniversary:2026", Verdict.SEND, "due")]),
        ("highest priority wins, the other is deferred", CUSTOMER, [occ(), occ("birthday", "birthday:2026")], None,
         [("anniversary:2026", Verdict.DEFER, "one email per pass"), ("birthday:2026", Verdict.SEND, "due")]),
        ("thresholds crossed together: the highest is sent, the lower superseded", CUSTOMER,
         [occ("spend", "milestone:lifetime_spend:500", series="s", rank=500),
          occ("spend", "milestone:lifetime_spend:1000", series="s", rank=1000)], None,
         [("milestone:lifetime_spend:1000", Verdict.SEND, "due"),
          ("milestone:lifetime_spend:500", Verdict.SKIP, "superseded")]),
        ("a higher threshold already sent supersedes a deferred lower one", CUSTOMER,
         [occ("spend", "milestone:lifetime_spend:500", series="s", rank=500),
          occ("spend", "milestone:lifetime_spend:1000", series="s", rank=1000)],
         {("spend", "milestone:lifetime_spend:1000"): "sent", ("spend", "milestone:lifetime_spend:500"): "deferred"},
         [("milestone:lifetime_spend:500", Verdict.SKIP, "superseded")]),
        ("email on its way counts for the frequency cap", CUSTOMER, None, {("birthday", "birthday:2026"): "queued"},
         [("anniversary:2026", Verdict.DEFER, "frequency cap")]),
        ("an unknown outcome counts for the frequency cap", CUSTOMER, None, {("birthday", "birthday:2026"): "unknown"},
         [("anniversary:2026", Verdict.DEFER, "frequency cap")]),
        ("emailed six days ago: deferred by the cap",
         replace(CUSTOMER, last_emailed_at=datetime(2026, 11, 17, 12, tzinfo=UTC)),
         None, None, [("anniversary:2026", Verdict.DEFER, "frequency cap")]),
        ("emailed seven days ago: the cap has passed",
         replace(CUSTOMER, last_emailed_at=datetime(2026, 11, 16, 12, tzinfo=UTC)),
         None, None, [("anniversary:2026", Verdict.SEND, "due")]),
    ],
)
def test_policy_step(case: str, customer: CustomerFacts, occasions: list[Occasion] | None,
                     logged: dict[tuple[str, str], str] | None, expected: list[tuple[str, Verdict, str]]) -> None:
    assert verdicts(customer, occasions, logged) == expected, case


def test_a_cap_of_zero_days_turns_the_cap_off() -> None:
    policy = replace(POLICY, min_days_between=0)
    customer = replace(CUSTOMER, last_emailed_at=NOW)
    assert verdicts(customer, logged={("birthday", "birthday:2026"): "queued"}, policy=policy) == [
        ("anniversary:2026", Verdict.SEND, "due")
    ]


def at(zone: str, year: int, month: int, day: int, hour: int, minute: int = 0) -> PassMoment:
    local = datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone))
    return PassMoment(local.date(), local, window_open=False)


@pytest.mark.parametrize(
    ("moment", "verdict"),
    [
        (at("Europe/London", 2026, 11, 23, 9, 0), Verdict.SEND),
        (at("Europe/London", 2026, 11, 23, 8, 59), Verdict.DEFER),
        (at("Europe/London", 2026, 11, 23, 17, 0), Verdict.DEFER),
        (at("Europe/London", 2026, 11, 22, 12, 0), Verdict.DEFER),  # Sunday: not a sending weekday
        (at("Pacific/Kiritimati", 2026, 11, 23, 9, 30), Verdict.SEND),
        (at("Pacific/Pago_Pago", 2026, 11, 23, 16, 59), Verdict.SEND),
        # DST starts in New York on 2026-03-08: 09:30 local is 13:30 UTC that day, 14:30 UTC the day before.
        (at("America/New_York", 2026, 3, 9, 9, 30), Verdict.SEND),
        (at("America/New_York", 2026, 3, 9, 8, 30), Verdict.DEFER),
    ],
)
def test_send_window_is_the_recipients_local_wall_clock(moment: PassMoment, verdict: Verdict) -> None:
    occasion = occ(due=moment.today)
    [decision] = decide(CUSTOMER, [occasion], CAMPAIGNS, {}, moment, POLICY)
    assert decision.verdict is verdict, decision.reason


def test_dst_change_moves_the_window_in_utc() -> None:
    zone = ZoneInfo("America/New_York")
    before = datetime(2026, 3, 6, 14, 30, tzinfo=UTC).astimezone(zone)  # Friday, EST: 09:30
    after = datetime(2026, 3, 9, 14, 30, tzinfo=UTC).astimezone(zone)  # Monday, EDT: 10:30
    early_after = datetime(2026, 3, 9, 12, 30, tzinfo=UTC).astimezone(zone)  # EDT: 08:30
    assert (before.time(), after.time()) == (time(9, 30), time(10, 30))
    assert in_send_window(before, POLICY) and in_send_window(after, POLICY)
    assert not in_send_window(early_after, POLICY)


def test_a_simulated_day_defers_on_days_that_are_not_sending_days() -> None:
    sunday = PassMoment(date(2026, 11, 22), None, window_open=True, weekday_only=True)
    assert verdicts(occasions=[occ(due=date(2026, 11, 22))], moment=sunday) == [
        ("anniversary:2026", Verdict.DEFER, "not a sending day (Sun)")
    ]


UNHAPPY = replace(CUSTOMER, unhappy_since=datetime(2026, 11, 20, 23, 30, tzinfo=UTC), timezone="Asia/Tokyo")


@pytest.mark.parametrize(
    ("case", "customer", "today", "expected"),
    [
        ("an unhappy answer nobody handled defers the occasion, naming the day in the customer's zone",
         UNHAPPY, TODAY, (Verdict.DEFER, "unhappy feedback on 2026-11-21, waiting for a person")),
        ("the pause holds on its last day", UNHAPPY, date(2026, 12, 20),
         (Verdict.DEFER, "unhappy feedback on 2026-11-21, waiting for a person")),
        ("after unhappy_pause_days the notes resume without a person", UNHAPPY, date(2026, 12, 21),
         (Verdict.SEND, "due")),
        ("handled (the store forgets it): sent", replace(UNHAPPY, unhappy_since=None), TODAY, (Verdict.SEND, "due")),
        ("unsubscribed still wins: skipped, not deferred", replace(UNHAPPY, unsubscribed=True), TODAY,
         (Verdict.SKIP, "unsubscribed")),
    ],
)
def test_unhappy_feedback_waits_for_a_person(
    case: str, customer: CustomerFacts, today: date, expected: tuple[Verdict, str]
) -> None:
    policy = replace(POLICY, unhappy_pause_days=30, weekdays=tuple(range(7)))
    [decision] = decide(customer, [occ(due=today)], CAMPAIGNS, {}, PassMoment(today, None, window_open=True), policy)
    assert (decision.verdict, decision.reason) == expected, case
