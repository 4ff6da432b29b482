"""Business registration: an enterprise tax code (mã số thuế) and, apart, consent to count clicks for it.

Validation is python-stdnum's `stdnum.vn.mst` (10 digits with a check digit, or
13 with a branch suffix 001-999), not ours. Several chats may give one code (the
staff of one firm): businesses are counted by code, and only chats that consented
count towards it. Without consent the code is kept (the chat gave it) but nothing
is linked: reports never join a chat's clicks to a business without `consent`.
"""

from __future__ import annotations

import enum
import re
import unicodedata

from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength, ValidationError
from stdnum.vn import mst

from outreach.models import Subscriber, utcnow
from outreach.subscribers import touch

_SEPARATORS = re.compile(r"[\s.\-_/]")


class Refusal(enum.StrEnum):
    """Why a tax code was refused; the bot and the CLI each say it in their words."""

    empty = "empty"
    not_digits = "not_digits"
    length = "length"
    personal = "personal"  # 12 digits: a citizen's code, not an enterprise's
    checksum = "checksum"
    branch = "branch"  # a branch suffix of 000
    invalid = "invalid"


class TaxCodeRefused(ValueError):
    """A tax code that is not an enterprise's; `reason` says why."""

    def __init__(self, reason: Refusal, given: str) -> None:
        super().__init__(f"{given!r} is not an enterprise tax code ({reason.value})")
        self.reason, self.given = reason, given


def check_tax_code(text: str) -> str:
    """The code in compact form (10 or 13 digits), or TaxCodeRefused naming the reason."""
    given = text.strip()
    digits = _SEPARATORS.sub("", unicodedata.normalize("NFKC", given))  # full-width digits from some keyboards
    if not digits:
        raise TaxCodeRefused(Refusal.empty, given)
    if not (digits.isascii() and digits.isdigit()):
        raise TaxCodeRefused(Refusal.not_digits, given)
    if len(digits) == 12:
        raise TaxCodeRefused(Refusal.personal, given)
    try:
        return str(mst.validate(digits))
    except InvalidLength:
        raise TaxCodeRefused(Refusal.length, given) from None
    except InvalidChecksum:
        raise TaxCodeRefused(Refusal.checksum, given) from None
    except InvalidComponent:
        reason = Refusal.branch if len(digits) == 13 and digits.endswith("000") else Refusal.invalid
        raise TaxCodeRefused(reason, given) from None
    except (InvalidFormat, ValidationError):
        raise TaxCodeRefused(Refusal.invalid, given) from None


def display(code: str) -> str:
    """The code as people write it: 0314409058-002."""
    return str(mst.format(code))


def register(subscriber: Subscriber, text: str) -> str:
    """Keep a checked tax code for the chat; consent is asked for apart. Returns the compact code."""
    code = check_tax_code(text)
    if subscriber.tax_code != code:
        subscriber.tax_code = code
        subscriber.consent, subscriber.consent_at = False, None  # consent was for the earlier code
    touch(subscriber)
    return code


def set_consent(subscriber: Subscriber, given: bool) -> None:
    """Whether this chat's clicks may be counted for its business (withdrawable at any time)."""
    subscriber.consent = given and subscriber.tax_code is not None
    subscriber.consent_at = utcnow() if subscriber.consent else None
    touch(subscriber)


def unregister(subscriber: Subscriber) -> None:
    """Drop the tax code and the consent that went with it."""
    subscriber.tax_code, subscriber.consent, subscriber.consent_at = None, False, None
    touch(subscriber)
