"""SpamAssassin for the tests: skip with a reason where it is not installed, and a message it must call spam."""

from __future__ import annotations

import pytest

from mailer.compose.spamscore import find_spamassassin

needs_spamassassin = pytest.mark.skipif(
    find_spamassassin() is None, reason="SpamAssassin is not installed (.ci/run installs Debian's spamassassin)"
)

# The Generic Test for Unsolicited Bulk Email: every SpamAssassin scores a message holding it 1000.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
