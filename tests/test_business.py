"""Enterprise tax codes (mã số thuế), checked by python-stdnum, with the reason a code is refused."""

from __future__ import annotations

import pytest

from outreach.business import Refusal, TaxCodeRefused, check_tax_code, display, register, set_consent
from outreach.models import Subscriber


@pytest.mark.parametrize(
    ("given", "compact"),
    [
        ("0100233488", "0100233488"),
        ("0314409058-002", "0314409058002"),
        (" 0314409058 002 ", "0314409058002"),
        ("0314409058.002", "0314409058002"),
        (
            "".join(chr(0xFF10 + int(d)) for d in "0100233488"),
            "0100233488",
        ),  # full-width digits, as some phone keyboards type them
    ],
)
def test_valid_codes_are_kept_compact(given: str, compact: str) -> None:
    assert check_tax_code(given) == compact


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("0100233480", Refusal.checksum),  # the check digit of 0100233488 changed
        ("0314409058-000", Refusal.branch),
        ("abc", Refusal.not_digits),
        ("", Refusal.empty),
        ("   ", Refusal.empty),
        ("01002334", Refusal.length),
        ("010023348812345", Refusal.length),
        ("079203001234", Refusal.personal),  # 12 digits: a citizen's code
        ("0100233488\u0660", Refusal.not_digits),  # an Arabic-Indic zero is a digit to Python, not to the tax office
    ],
)
def test_invalid_codes_are_refused_with_their_reason(given: str, reason: Refusal) -> None:
    with pytest.raises(TaxCodeRefused) as refused:
        check_tax_code(given)
    assert refused.value.reason is reason


def test_codes_are_shown_as_people_write_them() -> None:
    assert display("0314409058002") == "0314409058-002"
    assert display("0100233488") == "0100233488"


def test_a_new_code_needs_consent_again() -> None:
    subscriber = Subscriber(channel="telegram_bot", chat_id="1", topics=[])
    register(subscriber, "0100233488")
    set_consent(subscriber, True)
    assert subscriber.consent
    assert subscriber.consent_at is not None
    register(subscriber, "0100233488")  # the same code again: consent stays
    assert subscriber.consent
    register(subscriber, "0314409058-002")
    assert not subscriber.consent
    assert subscriber.consent_at is None


def test_consent_without_a_code_is_not_kept() -> None:
    subscriber = Subscriber(channel="telegram_bot", chat_id="1", topics=[])
    set_consent(subscriber, True)
    assert not subscriber.consent
