"""customer_since when the import file has none: the day of the customer's first order.

A customer imported without it joins on the day of the import (``customer_since_from =
"import"``), a stand-in until their orders arrive; the first order then sets it
(``"first_order"``) and an earlier order found later moves it back, so anniversaries and
years-as-customer follow the real first purchase. A date the file gave is never moved.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

FROM_IMPORT = "import"
FROM_FIRST_ORDER = "first_order"


def counts_as_first_order(kind: str, amount: Decimal | None) -> bool:
    """An order, not a refund (which is no purchase: see planning.occasions.is_refund)."""
    return kind == "order" and (amount is None or amount >= 0)


def since_from_order(since: date, since_from: str | None, occurred_at: datetime, zone: str) -> date | None:
    """The new customer_since an order gives (its day in the customer's zone), or None to keep the stored one."""
    if since_from not in (FROM_IMPORT, FROM_FIRST_ORDER):
        return None
    day = occurred_at.astimezone(ZoneInfo(zone)).date()
    if since_from == FROM_IMPORT or day < since:
        return day
    return None
