"""Column mapping: how the columns of a shop's export become mailer's columns.

A :class:`Layout` is built from a profile (``[import.profile.NAME]`` or a built-in one) and
``--map "File column=mailer column"`` options, then bound to the file's header: every
header is mapped to a mailer column, kept as a custom attribute, or ignored. Each row is then
rewritten into mailer's columns (dates read with the profile's format, tags split on its
separator, defaults filled in) before the field rules in ``contacts.fields`` check it, so
one set of rules judges every file. Without a profile or ``--map`` the file's own header is
mailer's (the documented CSV).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mailer.config import ImportProfile
from mailer.contacts.fields import (
    CONSENT_COLUMN,
    CUSTOMER_COLUMNS,
    CUSTOMER_REQUIRED,
    INTERACTION_COLUMNS,
    INTERACTION_REQUIRED,
    INTERACTION_REQUIRED_BY_EMAIL,
    RowProblem,
    parse_amount,
)
from mailer.errors import MailerError

KINDS = ("customers", "interactions")


def known_columns(kind: str) -> tuple[str, ...]:
    return (*CUSTOMER_COLUMNS, CONSENT_COLUMN) if kind == "customers" else (*INTERACTION_COLUMNS, "email")


# Header names shops commonly give mailer's columns: the did-you-mean of a missing column.
_LIKELY = {
    "external_id": ("customer id", "customer_id", "id", "customer number", "client id", "user id"),
    "email": ("e-mail", "email address", "e-mail address", "mail", "user_email", "billing_email"),
    "customer_since": ("created at", "date registered", "date_registered", "user_registered", "signup date", "joined"),
    "occurred_at": ("created at", "order date", "date", "paid at", "date_created"),
    "reference": ("name", "order", "order id", "order number", "order_number", "order_id"),
    "amount": ("total", "order total", "order_total", "amount"),
    "first_name": ("first name", "firstname", "given name"),
    "last_name": ("last name", "lastname", "surname", "family name"),
    "subscribed": ("accepts email marketing", "accepts marketing", "newsletter", "opt in", "marketing"),
}


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", " ", name.lower()).strip()


def did_you_mean_column(target: str, header: Sequence[str]) -> str | None:
    """The header that most likely holds ``target``, or None."""
    by_norm = {_norm(h): h for h in header}
    for likely in (target, *_LIKELY.get(target, ())):
        if _norm(likely) in by_norm:
            return by_norm[_norm(likely)]
    close = difflib.get_close_matches(_norm(target), list(by_norm), n=1, cutoff=0.6)
    return by_norm[close[0]] if close else None


def parse_map_option(value: str) -> tuple[str, str]:
    """``"File column=mailer column"`` → the pair; raises MailerError naming the option."""
    source, sep, target = value.rpartition("=")
    if not sep or not source.strip() or not target.strip():
        raise MailerError(f'--map {value!r}: expected "File column=mailer column", e.g. "E-Mail=email"')
    return source.strip(), target.strip()


class NoAddress(Exception):
    """The row has no email address and its profile says to leave such rows out."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A header that cannot be read: ``column`` is what the line names."""

    column: str
    problem: str


@dataclass
class Layout:
    """The mapping of one import; :meth:`bind` fits it to the file's header first."""

    kind: str
    profile: ImportProfile | None = None
    maps: tuple[tuple[str, str], ...] = ()  # --map options: they win over the profile's columns
    # (file header, mailer column or attribute name); one header may feed two columns (Email as email and id)
    plan: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    absent: list[tuple[str, str]] = field(default_factory=list)  # the profile's columns this file lacks
    # The columns a file of another kind must have (a gift pool's "code"); customers and interactions know theirs.
    needs: tuple[str, ...] = ()

    @property
    def mapped(self) -> bool:
        return self.profile is not None or bool(self.maps)

    @property
    def by_email(self) -> bool:
        return self.profile is not None and self.profile.match_by == "email"

    @property
    def group_lines(self) -> bool:
        return self.profile is not None and self.profile.group_lines

    @property
    def required(self) -> tuple[str, ...]:
        if self.needs:
            return self.needs
        if self.kind == "customers":
            return CUSTOMER_REQUIRED
        return INTERACTION_REQUIRED_BY_EMAIL if self.by_email else INTERACTION_REQUIRED

    @property
    def defaults(self) -> dict[str, str]:
        return dict(self.profile.defaults) if self.profile else {}

    def bind(self, header: Sequence[str]) -> list[Problem]:
        """Map every header; the problems are the lines to report (nothing is imported then)."""
        self.ignored, self.absent = [], []
        if not self.mapped:
            self.plan = [(h, h) for h in header]
            return [Problem(c, "missing column") for c in self.required if c not in header]
        problems: list[Problem] = []
        by_norm = {_norm(h): h for h in header}
        listing = f"the file has: {', '.join(header)}"
        chosen: dict[str, str] = {}  # mailer column → file header
        for source, target in self.maps:
            problem = self._target_problem(target)
            if problem:
                problems.append(Problem(target, problem))
            elif source not in header and _norm(source) not in by_norm:
                # The column that usually holds the target is a better guess than one that merely looks alike.
                close = difflib.get_close_matches(_norm(source), list(by_norm), n=1)
                guess = did_you_mean_column(target, header) or (by_norm[close[0]] if close else None)
                hint = f" (did you mean {guess!r}?)" if guess else ""
                problems.append(Problem(source, f"--map names a column the file does not have{hint}; {listing}"))
            elif target in chosen:
                problems.append(Problem(target, f"--map gives it twice: {chosen[target]!r} and {source!r}"))
            else:
                chosen[target] = source if source in header else by_norm[_norm(source)]
        for source, target in self.profile.columns if self.profile else ():
            problem = self._target_problem(target)
            if problem:
                origin = self.profile.origin if self.profile else ""
                problems.append(Problem(target, f"{problem} (in {origin} columns)"))
            elif target in chosen:
                continue  # --map, or an earlier alternative of the profile, already gives it
            elif _norm(source) in by_norm:
                chosen[target] = by_norm[_norm(source)]
            else:
                self.absent.append((source, target))
        taken = set(chosen.values())
        self.plan = [(source, target) for target, source in chosen.items()]
        keep = self.profile is None or self.profile.unmapped == "attributes"
        for name in header:
            if name in taken:
                continue
            if keep and name and name not in chosen:  # a column named like a mapped target would overwrite it
                self.plan.append((name, name))
            else:
                self.ignored.append(name)
        self.absent = [(s, t) for s, t in self.absent if t not in chosen]
        given = {target for _, target in self.plan} | set(self.defaults)
        for column in self.required:
            if column not in given:
                guess = did_you_mean_column(column, [h for h in header if h not in taken])
                hint = f' (did you mean --map "{guess}={column}"?)' if guess else ""
                problems.append(Problem(column, f"no column of the file maps to it{hint}; {listing}"))
        return problems

    def _target_problem(self, target: str) -> str | None:
        """A target that is nearly, but not, one of mailer's columns is a typo, not a new attribute."""
        known = known_columns(self.kind)
        if target in known:
            return None
        close = difflib.get_close_matches(target.lower(), known, n=1, cutoff=0.75)
        if close:
            return f"not a column of mailer's {self.kind} (did you mean {close[0]!r}?)"
        return None

    def source_of(self, column: str) -> str | None:
        for source, target in self.plan:
            if target == column:
                return source
        return None

    def label(self, column: str) -> str:
        """How an error names a column: the file's header, and mailer's name when they differ."""
        source = self.source_of(column)
        if source is None or source == column:
            return column
        return f"{source} ({column})"

    def row(self, raw: dict[str, str]) -> dict[str, str]:
        """The file's row in mailer's columns; raises RowProblem (mailer's column) for an unreadable date or amount."""
        if not self.mapped:
            return raw
        profile = self.profile
        row: dict[str, str] = {}
        for source, target in self.plan:
            value = raw.get(source) or ""
            if profile is not None and re.fullmatch(r"'[0-9+][0-9 ]*", value.strip()):
                value = value.strip()[1:]  # a spreadsheet's "keep as text" mark on numbers and zip codes
            row[target] = value
        for column, value in self.defaults.items():
            if not row.get(column, "").strip():
                row[column] = value
        if profile is None:
            return row
        if profile.without_email == "skip" and not row.get("email", "").strip():
            raise NoAddress
        if profile.date_format:
            for column in ("customer_since", "occurred_at"):
                if row.get(column, "").strip():
                    row[column] = _reformat(column, row[column], profile.date_format)
        if profile.tags_separator != ";" and "tags" in row:
            row["tags"] = ";".join(row["tags"].split(profile.tags_separator))
        if profile.guest_ids and row.get("external_id", "").strip() in ("", *profile.guest_ids):
            email = row.get("email", "").strip().lower()
            row["external_id"] = f"guest:{email}" if email else ""
        if self.group_lines:
            parse_amount("amount", row.get("amount", ""))  # each line's amount is checked on its own line
        return row

    def group_key(self, raw: dict[str, str]) -> tuple[str, str] | None:
        """Lines with one key are one interaction (an order's items); None: the line stands alone.

        Read from the file's own cells, so a line that fails its checks still belongs to its order.
        """
        reference, customer = self.source_of("reference"), self.source_of("email" if self.by_email else "external_id")
        if not self.group_lines or reference is None or not (raw.get(reference) or "").strip():
            return None
        who = (raw.get(customer) or "") if customer else ""
        return who.strip().lower(), (raw.get(reference) or "").strip()

    def merge(self, rows: Sequence[dict[str, str]]) -> dict[str, str]:
        """One row for an order's lines: each column from the first line that fills it, amounts summed."""
        merged = dict(rows[0])
        for row in rows[1:]:
            for column, value in row.items():
                if not merged.get(column, "").strip() and value.strip():
                    merged[column] = value
        amounts = [parse_amount("amount", r.get("amount", "")) for r in rows]
        present = [a for a in amounts if a is not None]
        merged["amount"] = str(sum(present)) if present else ""
        return merged

    def describe(self) -> list[str]:
        """The mapping in words, for ``--dry-run``."""
        lines = []
        if self.profile is not None:
            lines.append(f"profile {self.profile.name} ({self.profile.origin})")
        width = max((len(s) for s, _ in self.plan), default=0)
        for source, target in self.plan:
            note = "" if target in known_columns(self.kind) else "  (custom attribute)"
            lines.append(f"  {source:<{width}} -> {target}{note}")
        for column, value in self.defaults.items():
            if self.source_of(column) is None:
                lines.append(f"  {'(default)':<{width}} -> {column} = {value!r}")
        if self.ignored:
            lines.append(f"  ignored: {', '.join(self.ignored)}")
        if self.absent:
            lines.append(f"  not in this file: {', '.join(s for s, _ in self.absent)}")
        if self.profile is not None:
            if self.profile.date_format:
                lines.append(f"  dates read as {self.profile.date_format}")
            if self.group_lines:
                lines.append("  lines with the same reference are one interaction (amounts summed)")
            if self.by_email:
                lines.append("  the customer is found by email")
        return lines


def _reformat(column: str, value: str, fmt: str) -> str:
    """A date in the profile's format → ISO, which the field rules read."""
    try:
        moment = datetime.strptime(value.strip(), fmt)
    except ValueError:
        example = datetime(2024, 3, 5, 14, 22, 1).strftime(fmt.replace("%z", "+0000").replace("%Z", "UTC"))
        raise RowProblem(column, f"expected a date like {example!r} ({fmt}), got {value.strip()!r}") from None
    return moment.date().isoformat() if column == "customer_since" else moment.isoformat()
