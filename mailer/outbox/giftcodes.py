"""PURE: generated gift codes, ``PREFIX-BBBB-BBBB-TTTC``, unique, unguessable, typable and checked offline.

``B`` (8 characters) is the send-log row's number run through a keyed
permutation (a Feistel network over HMAC-SHA256 with the signing secret), so
two rows never get the same code and nobody without the secret can tell which
numbers are taken or work out the next one. ``T`` (3 characters) is an HMAC
tag over the prefix and ``B``: a made-up code passes only once in 27,000
tries. ``C`` is a Luhn mod-30 check character, so a slip of the finger is
told apart from a forgery. The alphabet leaves out 0/O, 1/I/L and U: nothing
a customer reads aloud or types from paper can be mistaken for another
character.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
_BASE = len(ALPHABET)
_BODY = 8
_TAG = 3
_SPACE = _BASE**_BODY  # how many codes one prefix has: one per send-log row number below it
_HALF_BITS = 20  # the permutation works on 40-bit numbers and walks until it lands below _SPACE
_HALF_MASK = (1 << _HALF_BITS) - 1
_ROUNDS = 4


class BadCode(ValueError):
    """Not a code of this shop: the reason says whether it was mistyped or never issued."""


@dataclass(frozen=True, slots=True)
class Verified:
    prefix: str
    serial: int  # the send-log row the code was made for
    code: str  # the code as printed (upper case, dashes in place)


class CodeMaker:
    """Makes and checks the codes of one prefix with one secret."""

    def __init__(self, secret: str, prefix: str) -> None:
        self.prefix = prefix
        self._key = hmac.new(secret.encode(), digestmod=hashlib.sha256)

    def _mac(self, message: str) -> bytes:
        mac = self._key.copy()
        mac.update(message.encode())
        return mac.digest()

    def _round(self, index: int, half: int) -> int:
        return int.from_bytes(self._mac(f"gift-code:{self.prefix}:{index}:{half}")[:4], "big") & _HALF_MASK

    def _permute(self, number: int, *, inverse: bool = False) -> int:
        rounds = range(_ROUNDS - 1, -1, -1) if inverse else range(_ROUNDS)
        while True:  # cycle-walking: a permutation of 2**40 numbers restricted to those below _SPACE
            left, right = number >> _HALF_BITS, number & _HALF_MASK
            for index in rounds:
                if inverse:
                    left, right = right ^ self._round(index, left), left
                else:
                    left, right = right, left ^ self._round(index, right)
            number = (left << _HALF_BITS) | right
            if number < _SPACE:
                return number

    def _tag(self, body: str) -> str:
        value = int.from_bytes(self._mac(f"gift-tag:{self.prefix}:{body}")[:8], "big")
        return _digits(value % _BASE**_TAG, _TAG)

    def make(self, serial: int) -> str:
        """The code for send-log row ``serial``; the same serial always gives the same code."""
        if not 0 <= serial < _SPACE:
            raise ValueError(f"serial {serial} is outside 0..{_SPACE - 1}")
        body = _digits(self._permute(serial), _BODY)
        payload = body + self._tag(body)
        full = payload + _check_char(payload)
        return f"{self.prefix}-{full[0:4]}-{full[4:8]}-{full[8:12]}"

    def verify(self, code: str) -> Verified:
        """The row a code was made for; raises BadCode saying what is wrong with it."""
        prefix, payload = split_code(code)
        if prefix != self.prefix:
            raise BadCode(f"the prefix is {prefix!r}, not {self.prefix!r}")
        if _check_char(payload[:-1]) != payload[-1]:
            raise BadCode("a character is mistyped (the check character does not match)")
        body, tag = payload[:_BODY], payload[_BODY:-1]
        if not hmac.compare_digest(tag, self._tag(body)):
            raise BadCode("not issued by this shop (its signature does not match)")
        serial = self._permute(_number(body), inverse=True)
        return Verified(prefix, serial, self.make(serial))


def split_code(code: str) -> tuple[str, str]:
    """``(PREFIX, 12 code characters)`` from what a person typed: any case, spaces and dashes ignored."""
    text = "-".join(code.strip().upper().split())  # spaces stand for dashes
    prefix, dash, rest = text.partition("-")
    if not dash or not prefix:
        raise BadCode("expected PREFIX-XXXX-XXXX-XXXX")
    payload = rest.replace("-", "")
    wrong = sorted({ch for ch in payload if ch not in ALPHABET})
    if wrong:
        raise BadCode(f"{', '.join(map(repr, wrong))} never appear in codes (0, O, 1, I, L and U are left out)")
    if len(payload) != _BODY + _TAG + 1:
        raise BadCode(f"expected 12 characters after the prefix, got {len(payload)}")
    return prefix, payload


def prefix_of(code: str) -> str:
    return "-".join(code.strip().upper().split()).partition("-")[0]


def _digits(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, _BASE)
        out.append(ALPHABET[digit])
    return "".join(reversed(out))


def _number(text: str) -> int:
    value = 0
    for ch in text:
        value = value * _BASE + ALPHABET.index(ch)
    return value


def _check_char(payload: str) -> str:
    """Luhn mod N: catches every single mistyped character and most swaps of neighbours."""
    factor, total = 2, 0
    for ch in reversed(payload):
        addend = factor * ALPHABET.index(ch)
        total += addend // _BASE + addend % _BASE
        factor = 1 if factor == 2 else 2
    return ALPHABET[(_BASE - total % _BASE) % _BASE]
