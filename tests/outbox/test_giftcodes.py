"""Generated gift codes: unique over 100k rows, verifiable offline, unguessable, and free of confusable characters."""

from __future__ import annotations

import random
import re

import pytest

from mailer.outbox.giftcodes import ALPHABET, BadCode, CodeMaker

SECRET = "a-test-secret-that-is-long-enough"
FORMAT = re.compile(r"THANKS-[%s]{4}-[%s]{4}-[%s]{4}" % ((ALPHABET,) * 3))


def test_100k_rows_get_100k_different_codes_each_verifying_back_to_its_row() -> None:
    maker = CodeMaker(SECRET, "THANKS")
    codes = [maker.make(serial) for serial in range(100_000)]
    assert len(set(codes)) == 100_000
    assert all(FORMAT.fullmatch(code) for code in codes)
    for serial in random.Random(1).sample(range(100_000), 500):
        assert maker.verify(codes[serial]).serial == serial


def test_codes_use_no_character_a_person_could_mistake_for_another() -> None:
    assert not set("0O1ILU") & set(ALPHABET)
    maker = CodeMaker(SECRET, "THANKS")
    body = "".join(maker.make(n).removeprefix("THANKS-") for n in range(2000))
    assert not set("0O1ILU") & set(body)


def test_what_a_person_types_is_read_in_any_case_and_with_spaces_for_dashes() -> None:
    maker = CodeMaker(SECRET, "THANKS")
    code = maker.make(4711)
    assert maker.verify(code.lower()).code == code
    assert maker.verify(" " + code.replace("-", " ") + " ").serial == 4711


def test_every_single_mistyped_character_is_caught_as_a_typo() -> None:
    maker = CodeMaker(SECRET, "THANKS")
    code = maker.make(99)
    for position in range(len("THANKS-"), len(code)):
        if code[position] == "-":
            continue
        for wrong in ALPHABET.replace(code[position], ""):
            typo = code[:position] + wrong + code[position + 1 :]
            with pytest.raises(BadCode, match="mistyped"):
                maker.verify(typo)


def test_a_made_up_code_with_a_correct_check_character_still_fails_the_signature() -> None:
    maker = CodeMaker(SECRET, "THANKS")
    other = CodeMaker("another shop's secret", "THANKS")
    forged = [other.make(n) for n in range(300)]  # well-formed, check character right, wrong key
    rejected = 0
    for code in forged:
        try:
            maker.verify(code)
        except BadCode as exc:
            assert "not issued by this shop" in str(exc)
            rejected += 1
    assert rejected >= 295  # a forged tag passes once in 27,000 tries


def test_codes_cannot_be_told_from_the_next_row_number() -> None:
    maker = CodeMaker(SECRET, "THANKS")
    first, second = maker.make(1000), maker.make(1001)
    shared = sum(a == b for a, b in zip(first, second, strict=True)) - len("THANKS---")
    assert shared < 6  # neighbours' codes look unrelated


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("THANKS-ABCD-EFGH-JKM0", "never appear"),
        ("THANKS-ABCD-EFGH", "expected 12 characters"),
        ("ABCDEFGHJKMN", "expected PREFIX"),
        ("OTHER-ABCD-EFGH-JKMN", "prefix is 'OTHER'"),
    ],
)
def test_a_malformed_code_says_what_is_wrong(typed: str, problem: str) -> None:
    with pytest.raises(BadCode, match=problem):
        CodeMaker(SECRET, "THANKS").verify(typed)
