"""Posting windows, holidays, daily caps and minimum gaps: exact moments and exact reasons."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest

from outreach.windows import Holidays, Pacing, Verdict, Window, describe, next_slot, parse_window, parse_windows

VN = ZoneInfo("Asia/Ho_Chi_Minh")  # UTC+7, no DST
WEEKDAYS = frozenset(range(5))
OFFICE = (parse_window("Mon-Fri 07:30-11:30"), parse_window("Mon-Fri 13:30-17:00"))
OFFICE_TEXT = "Mon-Fri 07:30-11:30, 13:30-17:00"
OUTSIDE = f"outside the posting windows ({OFFICE_TEXT})"
HOLIDAYS = Holidays()
# The library itself, to look lunar dates up rather than hard-code them.
LIBRARY_2027 = holidays.country_holidays("VN", years=2027, language="en_US")


def local(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A wall-clock moment in Vietnam."""
    return datetime(year, month, day, hour, minute, second, tzinfo=VN)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def slot(
    pacing: Pacing,
    now: datetime,
    sent_today: int = 0,
    last_sent: datetime | None = None,
    holidays: Holidays = HOLIDAYS,
    zone: ZoneInfo = VN,
) -> Verdict:
    return next_slot(pacing, holidays, zone, now, sent_today, last_sent)


def library_day(name: str) -> date:
    (day,) = LIBRARY_2027.get_named(name, lookup="exact")
    return day


def first_working_day_after(day: date) -> date:
    """Per the library alone: the next Monday-Friday that is not a public holiday."""
    day += timedelta(days=1)
    while day.weekday() >= 5 or day in LIBRARY_2027:
        day += timedelta(days=1)
    return day


# --- parse_window ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mon-Fri 07:30-11:30", Window(WEEKDAYS, time(7, 30), time(11, 30))),
        ("Sat 08:00-10:00", Window(frozenset({5}), time(8), time(10))),
        ("Mon,Wed,Fri 13:30-17:00", Window(frozenset({0, 2, 4}), time(13, 30), time(17))),
        ("Mon-Sun 00:00-24:00", Window(frozenset(range(7)), time(0), time(0))),
        ("Fri-Mon 09:00-10:00", Window(frozenset({4, 5, 6, 0}), time(9), time(10))),
        ("Sun-Tue 09:00-10:00", Window(frozenset({6, 0, 1}), time(9), time(10))),
        ("mon-FRI 7:30-11:30", Window(WEEKDAYS, time(7, 30), time(11, 30))),
        ("  Mon, Wed-Fri   13:30-17:00 ", Window(frozenset({0, 2, 3, 4}), time(13, 30), time(17))),
        ("Sat,Sun 20:00-24:00", Window(frozenset({5, 6}), time(20), time(0))),
    ],
)
def test_parse_window_accepts(text: str, expected: Window) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("Mon-Fri 07:30-11:30", "Mon-Fri 07:30-11:30"),
        ("Mon,Wed,Fri 13:30-17:00", "Mon,Wed,Fri 13:30-17:00"),
        ("Mon-Sun 00:00-24:00", "Mon-Sun 00:00-24:00"),
        ("Fri-Mon 09:00-10:00", "Fri-Mon 09:00-10:00"),
        ("sat,sun 8:05-9:00", "Sat-Sun 08:05-09:00"),
        ("Mon,Wed-Fri,Sun 13:30-17:00", "Wed-Fri,Sun-Mon 13:30-17:00"),
    ],
)
def test_window_is_written_back_as_config_reads_it(text: str, written: str) -> None:
    window = parse_window(text)
    assert str(window) == written
    assert parse_window(str(window)) == window


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Mon-Fry 07:30-11:30",
            "bad window 'Mon-Fry 07:30-11:30': unknown day 'Fry' (Mon, Tue, Wed, Thu, Fri, Sat, Sun)",
        ),
        (
            "Monday 07:30-11:30",
            "bad window 'Monday 07:30-11:30': unknown day 'Monday' (Mon, Tue, Wed, Thu, Fri, Sat, Sun)",
        ),
        ("", "bad window '': expected days and a time range, like 'Mon-Fri 07:30-11:30'"),
        ("Mon-Fri", "bad window 'Mon-Fri': expected days and a time range, like 'Mon-Fri 07:30-11:30'"),
        ("Mon,,Fri 07:30-11:30", "bad window 'Mon,,Fri 07:30-11:30': empty day in 'Mon,,Fri'"),
        (
            "Mon-Wed-Fri 07:30-11:30",
            "bad window 'Mon-Wed-Fri 07:30-11:30': day range 'Mon-Wed-Fri' has more than two ends",
        ),
        (
            "Mon-Mon 07:30-11:30",
            "bad window 'Mon-Mon 07:30-11:30': day range 'Mon-Mon' starts and ends on the same day"
            " (write 'Mon', or 'Mon-Sun' for every day)",
        ),
        ("Mon 0730-1130", "bad window 'Mon 0730-1130': time range '0730-1130' is not HH:MM-HH:MM"),
        ("Mon 07:30", "bad window 'Mon 07:30': time range '07:30' is not HH:MM-HH:MM"),
        (
            "Mon 07:30-11:30-12:00",
            "bad window 'Mon 07:30-11:30-12:00': time range '07:30-11:30-12:00' is not HH:MM-HH:MM",
        ),
        ("Mon 25:00-26:00", "bad window 'Mon 25:00-26:00': no such time '25:00'"),
        ("Mon 07:60-11:30", "bad window 'Mon 07:60-11:30': no such time '07:60'"),
        ("Mon 07:30-24:30", "bad window 'Mon 07:30-24:30': no such time '24:30'"),
        ("Mon 24:00-24:00", "bad window 'Mon 24:00-24:00': 24:00 can only end a window"),
        ("Mon 11:30-11:30", "bad window 'Mon 11:30-11:30': start 11:30 is not before end 11:30"),
        (
            "Mon 22:00-02:00",
            "bad window 'Mon 22:00-02:00': start 22:00 is not before end 02:00 (split a window that crosses midnight in two)",
        ),
    ],
)
def test_parse_window_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"\A.*\Z") as caught:
        parse_window(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("days", "start", "end", "message"),
    [
        (frozenset(), time(7), time(8), "window days must be a non-empty set of 0 (Mon) .. 6 (Sun), not []"),
        (frozenset({7}), time(7), time(8), "window days must be a non-empty set of 0 (Mon) .. 6 (Sun), not [7]"),
        (frozenset({0}), time(8), time(7), "window start 08:00 is not before end 07:00"),
        (
            frozenset({0}),
            time(7, tzinfo=UTC),
            time(8),
            "window times are local wall-clock times: give them without tzinfo",
        ),
    ],
)
def test_window_checks_itself(days: frozenset[int], start: time, end: time, message: str) -> None:
    with pytest.raises(ValueError, match=r"\A.*\Z") as caught:
        Window(days, start, end)
    assert str(caught.value) == message


# --- windows -----------------------------------------------------------------

PACED = Pacing(windows=OFFICE)


def test_inside_a_window_goes_now_in_utc() -> None:
    now = local(2026, 3, 3, 9, 0, 17)  # a Tuesday
    assert slot(PACED, now) == Verdict(utc(2026, 3, 3, 2, 0, 17), "")
    assert slot(PACED, now).when.tzinfo is UTC


def test_start_is_inclusive() -> None:
    assert slot(PACED, local(2026, 3, 3, 7, 30)) == Verdict(utc(2026, 3, 3, 0, 30), "")


def test_before_the_first_window_waits_for_it_expressed_in_utc() -> None:
    # 07:30 in Vietnam is 00:30 UTC.
    assert slot(PACED, local(2026, 3, 3, 6, 0)) == Verdict(utc(2026, 3, 3, 0, 30), f"{OUTSIDE} until 07:30")


def test_between_windows_waits_for_the_afternoon() -> None:
    assert slot(PACED, local(2026, 3, 3, 12, 0)) == Verdict(utc(2026, 3, 3, 6, 30), f"{OUTSIDE} until 13:30")


def test_end_is_exclusive() -> None:
    assert slot(PACED, local(2026, 3, 3, 11, 29, 59)) == Verdict(utc(2026, 3, 3, 4, 29, 59), "")
    assert slot(PACED, local(2026, 3, 3, 11, 30)) == Verdict(utc(2026, 3, 3, 6, 30), f"{OUTSIDE} until 13:30")
    assert slot(PACED, local(2026, 3, 3, 17, 0)) == Verdict(utc(2026, 3, 4, 0, 30), f"{OUTSIDE} until tomorrow 07:30")


def test_after_the_last_window_waits_for_tomorrow() -> None:
    assert slot(PACED, local(2026, 3, 3, 18, 0)) == Verdict(utc(2026, 3, 4, 0, 30), f"{OUTSIDE} until tomorrow 07:30")


@pytest.mark.parametrize("now", [local(2026, 3, 6, 17, 0), local(2026, 3, 7, 10, 0), local(2026, 3, 7, 23, 59)])
def test_weekend_waits_for_monday(now: datetime) -> None:
    assert slot(PACED, now) == Verdict(utc(2026, 3, 9, 0, 30), f"{OUTSIDE} until Mon 09/03 07:30")


def test_sunday_evening_says_tomorrow() -> None:
    assert slot(PACED, local(2026, 3, 8, 23, 59)) == Verdict(utc(2026, 3, 9, 0, 30), f"{OUTSIDE} until tomorrow 07:30")


def test_now_in_another_zone_is_read_in_the_install_zone() -> None:
    # 19:00 in New York on Monday is 06:00 Tuesday in Vietnam.
    now = datetime(2026, 3, 2, 19, 0, tzinfo=ZoneInfo("America/New_York"))
    assert slot(PACED, now) == Verdict(utc(2026, 3, 3, 0, 30), f"{OUTSIDE} until 07:30")
    assert slot(PACED, utc(2026, 3, 3, 2, 0)) == Verdict(utc(2026, 3, 3, 2, 0), "")


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\Anow must be timezone-aware, not naive 2026-03-03T09:00:00\Z"):
        slot(PACED, datetime(2026, 3, 3, 9, 0))


def test_no_windows_means_any_time() -> None:
    assert slot(Pacing(), local(2026, 3, 8, 3, 0)) == Verdict(utc(2026, 3, 7, 20, 0), "")


def test_a_whole_day_window_ends_at_midnight() -> None:
    pacing = Pacing(windows=(parse_window("Mon-Fri 00:00-24:00"),))
    assert slot(pacing, local(2026, 3, 6, 23, 59, 59)) == Verdict(utc(2026, 3, 6, 16, 59, 59), "")
    assert slot(pacing, local(2026, 3, 7, 0, 0)) == Verdict(
        utc(2026, 3, 8, 17, 0), "outside the posting windows (Mon-Fri 00:00-24:00) until Mon 09/03 00:00"
    )


def test_a_wrapping_day_range() -> None:
    pacing = Pacing(windows=(parse_window("Fri-Mon 20:00-22:00"),))
    assert slot(pacing, local(2026, 3, 8, 21, 0)) == Verdict(utc(2026, 3, 8, 14, 0), "")  # Sunday
    assert slot(pacing, local(2026, 3, 9, 22, 0)) == Verdict(
        utc(2026, 3, 13, 13, 0), "outside the posting windows (Fri-Mon 20:00-22:00) until Fri 13/03 20:00"
    )


def test_windows_on_different_days_are_all_listed() -> None:
    pacing = Pacing(windows=(*OFFICE, parse_window("Sat 08:00-10:00")))
    assert slot(pacing, local(2026, 3, 6, 18, 0)) == Verdict(
        utc(2026, 3, 7, 1, 0),
        "outside the posting windows (Mon-Fri 07:30-11:30, 13:30-17:00, Sat 08:00-10:00) until tomorrow 08:00",
    )


def test_windows_follow_daylight_saving_time() -> None:
    # Paris moves to UTC+2 on Sunday 29 March 2026: 09:00 is 08:00 UTC on Friday, 07:00 UTC on Monday.
    paris = ZoneInfo("Europe/Paris")
    pacing = Pacing(windows=(parse_window("Mon-Fri 09:00-17:00"),))
    friday = datetime(2026, 3, 27, 9, 0, tzinfo=paris)
    assert slot(pacing, friday, zone=paris) == Verdict(utc(2026, 3, 27, 8, 0), "")
    assert slot(pacing, friday.replace(hour=18), zone=paris) == Verdict(
        utc(2026, 3, 30, 7, 0), "outside the posting windows (Mon-Fri 09:00-17:00) until Mon 30/03 09:00"
    )


def test_a_later_year_is_written_with_the_year() -> None:
    # Thursday 31 December: Friday is New Year's Day, then the weekend.
    pacing = Pacing(windows=OFFICE, skip_holidays=True)
    assert slot(pacing, local(2026, 12, 31, 18, 0)) == Verdict(
        utc(2027, 1, 4, 0, 30), f"{OUTSIDE} until Mon 04/01/2027 07:30, after holiday 01/01 (New Year's Day)"
    )


# --- holidays ----------------------------------------------------------------

ON_HOLIDAYS = Pacing(windows=OFFICE, skip_holidays=True)


def test_holiday_names_come_from_the_library() -> None:
    assert HOLIDAYS.name(date(2027, 4, 30)) == "Liberation Day/Reunification Day"
    assert HOLIDAYS.name(date(2027, 9, 2)) == "National Day"
    assert HOLIDAYS.name(library_day("Hung Kings' Commemoration Day")) == "Hung Kings' Commemoration Day"
    assert HOLIDAYS.name(library_day("Lunar New Year")) == "Lunar New Year"
    assert HOLIDAYS.name(date(2027, 3, 3)) is None
    assert date(2027, 9, 2) in HOLIDAYS
    assert date(2027, 3, 3) not in HOLIDAYS
    assert datetime(2027, 9, 2, 9, 0) in HOLIDAYS


def test_holiday_names_in_vietnamese() -> None:
    assert Holidays(language="vi").name(date(2027, 9, 2)) == "Quốc khánh"


def test_extra_days_off() -> None:
    extra = Holidays(extra=frozenset({date(2027, 3, 3), date(2027, 9, 2)}))
    assert extra.name(date(2027, 3, 3)) == "extra day off"
    assert extra.name(date(2027, 9, 2)) == "National Day"  # the library's name wins
    assert date(2027, 3, 3) in extra
    assert date(2027, 3, 3) not in HOLIDAYS
    assert Holidays(extra={date(2027, 3, 3)}).extra == frozenset({date(2027, 3, 3)})  # type: ignore[arg-type]  # a set from config


def test_unknown_country() -> None:
    with pytest.raises(ValueError, match=r"\Ano public holidays known for country 'XX'\Z"):
        Holidays(country="XX")


def test_tet_eve_evening_waits_until_after_tet() -> None:
    eve = library_day("Lunar New Year") - timedelta(days=1)
    back = first_working_day_after(eve)
    assert (back - eve).days >= 5  # Tết is several days off, not one
    verdict = slot(ON_HOLIDAYS, datetime.combine(eve, time(18), tzinfo=VN))
    opening = datetime.combine(back, time(7, 30), tzinfo=VN)
    assert verdict == Verdict(
        opening.astimezone(UTC),
        f"holiday on {eve:%d/%m} ({LIBRARY_2027[eve]}) until {back:%a %d/%m} 07:30",
    )
    assert verdict.when == datetime.combine(back, time(0, 30), tzinfo=UTC)  # 07:30 in Vietnam


def test_the_evening_before_tet_begins_waits_until_after_tet() -> None:
    # The working day before the first day off: its reason is the window, its answer after Tết.
    first_off = library_day("Lunar New Year")
    while first_off - timedelta(days=1) in LIBRARY_2027:
        first_off -= timedelta(days=1)
    before = first_off - timedelta(days=1)
    back = first_working_day_after(first_off)
    verdict = slot(ON_HOLIDAYS, datetime.combine(before, time(18), tzinfo=VN))
    assert verdict == Verdict(
        datetime.combine(back, time(7, 30), tzinfo=VN).astimezone(UTC),
        f"{OUTSIDE} until {back:%a %d/%m} 07:30, after holidays {first_off:%d/%m}-{back - timedelta(days=1):%d/%m} (Lunar New Year)",
    )


def test_hung_kings_day() -> None:
    day = library_day("Hung Kings' Commemoration Day")
    back = first_working_day_after(day)
    assert slot(ON_HOLIDAYS, datetime.combine(day, time(9), tzinfo=VN)) == Verdict(
        datetime.combine(back, time(7, 30), tzinfo=VN).astimezone(UTC),
        f"holiday on {day:%d/%m} (Hung Kings' Commemoration Day) until {back:%a %d/%m} 07:30",
    )


def test_30_april_runs_into_1_may_and_its_observed_monday() -> None:
    assert slot(ON_HOLIDAYS, local(2027, 4, 30, 9, 0)) == Verdict(
        utc(2027, 5, 4, 0, 30), "holiday on 30/04 (Liberation Day/Reunification Day) until Tue 04/05 07:30"
    )


def test_national_day_is_two_days() -> None:
    assert slot(ON_HOLIDAYS, local(2027, 9, 2, 9, 0)) == Verdict(
        utc(2027, 9, 6, 0, 30), "holiday on 02/09 (National Day) until Mon 06/09 07:30"
    )


def test_extra_day_off_from_config() -> None:
    extra = Holidays(extra=frozenset({date(2026, 3, 10)}))
    assert slot(ON_HOLIDAYS, local(2026, 3, 10, 9, 0), holidays=extra) == Verdict(
        utc(2026, 3, 11, 0, 30), "holiday on 10/03 (extra day off) until tomorrow 07:30"
    )
    assert slot(ON_HOLIDAYS, local(2026, 3, 9, 18, 0), holidays=extra) == Verdict(
        utc(2026, 3, 11, 0, 30), f"{OUTSIDE} until Wed 11/03 07:30, after holiday 10/03 (extra day off)"
    )


def test_holidays_are_ignored_unless_skipped() -> None:
    assert slot(PACED, local(2027, 4, 30, 9, 0)) == Verdict(utc(2027, 4, 30, 2, 0), "")
    extra = Holidays(extra=frozenset({date(2026, 3, 10)}))
    assert slot(PACED, local(2026, 3, 10, 9, 0), holidays=extra) == Verdict(utc(2026, 3, 10, 2, 0), "")


def test_holiday_without_windows_waits_for_midnight() -> None:
    # Friday 30 April, Saturday 1 May off; without windows Sunday is a posting day.
    assert slot(Pacing(skip_holidays=True), local(2027, 4, 30, 9, 0)) == Verdict(
        utc(2027, 5, 1, 17, 0), "holiday on 30/04 (Liberation Day/Reunification Day) until Sun 02/05 00:00"
    )


def test_no_slot_at_all() -> None:
    saturdays = frozenset(date(2026, 3, 7) + timedelta(weeks=n) for n in range(60))
    pacing = Pacing(windows=(parse_window("Sat 08:00-10:00"),), skip_holidays=True)
    with pytest.raises(ValueError, match=r"\A.*\Z") as caught:
        slot(pacing, local(2026, 3, 6, 9, 0), holidays=Holidays(extra=saturdays))
    assert str(caught.value) == (
        "no posting slot in the 400 days from 06/03/2026: the days with posting windows (Sat 08:00-10:00) are all holidays"
    )


# --- daily cap ---------------------------------------------------------------

CAPPED = Pacing(windows=OFFICE, max_per_day=6)


def test_under_the_cap_goes_now() -> None:
    assert slot(CAPPED, local(2026, 3, 3, 9, 0), sent_today=5) == Verdict(utc(2026, 3, 3, 2, 0), "")


def test_cap_reached_waits_for_tomorrow() -> None:
    assert slot(CAPPED, local(2026, 3, 3, 9, 0), sent_today=6) == Verdict(
        utc(2026, 3, 4, 0, 30), "6 posts today already (max_per_day 6) until tomorrow 07:30"
    )


def test_cap_reached_on_friday_waits_for_monday() -> None:
    assert slot(CAPPED, local(2026, 3, 6, 12, 0), sent_today=7) == Verdict(
        utc(2026, 3, 9, 0, 30), "7 posts today already (max_per_day 6) until Mon 09/03 07:30"
    )


def test_cap_of_one_without_windows() -> None:
    assert slot(Pacing(max_per_day=1), local(2026, 3, 3, 9, 0), sent_today=1) == Verdict(
        utc(2026, 3, 3, 17, 0), "1 post today already (max_per_day 1) until tomorrow 00:00"
    )


def test_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\Asent_today cannot be negative \(-1\)\Z"):
        slot(CAPPED, local(2026, 3, 3, 9, 0), sent_today=-1)


# --- minimum gap -------------------------------------------------------------

GAPPED = Pacing(windows=OFFICE, min_gap=timedelta(minutes=60))


def test_gap_inside_a_window() -> None:
    assert slot(GAPPED, local(2026, 3, 3, 9, 54), last_sent=local(2026, 3, 3, 9, 42)) == Verdict(
        utc(2026, 3, 3, 3, 42), "last post 12 min ago (min_gap 60 min) until 10:42"
    )


def test_gap_with_seconds_and_last_sent_in_utc() -> None:
    assert slot(GAPPED, local(2026, 3, 3, 9, 54), last_sent=utc(2026, 3, 3, 2, 42, 30)) == Verdict(
        utc(2026, 3, 3, 3, 42, 30), "last post 11 min ago (min_gap 60 min) until 10:42:30"
    )


def test_gap_just_after_a_post() -> None:
    assert slot(GAPPED, local(2026, 3, 3, 9, 0, 45), last_sent=local(2026, 3, 3, 9, 0)) == Verdict(
        utc(2026, 3, 3, 3, 0), "last post 45 s ago (min_gap 60 min) until 10:00"
    )


def test_gap_elapsed_goes_now() -> None:
    assert slot(GAPPED, local(2026, 3, 3, 10, 42), last_sent=local(2026, 3, 3, 9, 42)) == Verdict(
        utc(2026, 3, 3, 3, 42), ""
    )


def test_gap_past_the_end_of_a_window_waits_for_the_next() -> None:
    assert slot(GAPPED, local(2026, 3, 3, 11, 0), last_sent=local(2026, 3, 3, 10, 45)) == Verdict(
        utc(2026, 3, 3, 6, 30), "last post 15 min ago (min_gap 60 min) until 13:30"
    )


def test_gap_that_ends_before_the_window_opens_is_not_the_reason() -> None:
    assert slot(GAPPED, local(2026, 3, 3, 6, 30), last_sent=local(2026, 3, 3, 6, 0)) == Verdict(
        utc(2026, 3, 3, 0, 30), f"{OUTSIDE} until 07:30"
    )


def test_gap_that_ends_after_the_window_opens_is_the_reason() -> None:
    assert slot(GAPPED, local(2026, 3, 3, 7, 0), last_sent=local(2026, 3, 3, 6, 50)) == Verdict(
        utc(2026, 3, 3, 0, 50), "last post 10 min ago (min_gap 60 min) until 07:50"
    )


def test_last_post_in_the_future() -> None:
    # A clock skew between hosts: the gap still counts from the recorded post.
    assert slot(GAPPED, local(2026, 3, 3, 9, 0), last_sent=local(2026, 3, 3, 9, 5)) == Verdict(
        utc(2026, 3, 3, 3, 5), "last post at 09:05 (min_gap 60 min) until 10:05"
    )


def test_gap_without_windows() -> None:
    pacing = Pacing(min_gap=timedelta(hours=3))
    assert slot(pacing, local(2026, 3, 3, 23, 0), last_sent=local(2026, 3, 3, 22, 0)) == Verdict(
        utc(2026, 3, 3, 18, 0), "last post 60 min ago (min_gap 3 h) until tomorrow 01:00"
    )


# --- combinations ------------------------------------------------------------

EVERYTHING = Pacing(windows=OFFICE, skip_holidays=True, max_per_day=6, min_gap=timedelta(minutes=60))


def test_gap_past_the_last_window_then_weekend_then_holiday() -> None:
    # Friday 24 April 2026 16:30; Monday 27 April is Hùng Kings' day (observed).
    assert HOLIDAYS.name(date(2026, 4, 27)) == "Hung Kings' Commemoration Day (observed)"
    assert slot(EVERYTHING, local(2026, 4, 24, 16, 30), sent_today=2, last_sent=local(2026, 4, 24, 16, 20)) == Verdict(
        utc(2026, 4, 28, 0, 30),
        "last post 10 min ago (min_gap 60 min) until Tue 28/04 07:30, after holidays 26/04-27/04 (Hung Kings' Commemoration Day)",
    )


def test_cap_comes_before_gap() -> None:
    assert slot(EVERYTHING, local(2026, 4, 24, 9, 0), sent_today=6, last_sent=local(2026, 4, 24, 8, 50)) == Verdict(
        utc(2026, 4, 28, 0, 30),
        "6 posts today already (max_per_day 6) until Tue 28/04 07:30, after holidays 26/04-27/04 (Hung Kings' Commemoration Day)",
    )


def test_holiday_comes_before_cap_and_gap() -> None:
    assert slot(EVERYTHING, local(2027, 9, 2, 9, 0), sent_today=6, last_sent=local(2027, 9, 2, 8, 50)) == Verdict(
        utc(2027, 9, 6, 0, 30), "holiday on 02/09 (National Day) until Mon 06/09 07:30"
    )


def test_a_long_gap_outlasts_the_cap() -> None:
    pacing = Pacing(windows=OFFICE, max_per_day=1, min_gap=timedelta(hours=30))
    assert slot(pacing, local(2026, 3, 3, 9, 0), sent_today=1, last_sent=local(2026, 3, 3, 8, 0)) == Verdict(
        utc(2026, 3, 4, 7, 0), "1 post today already (max_per_day 1) until tomorrow 14:00"
    )


def test_everything_allows_now() -> None:
    assert slot(EVERYTHING, local(2026, 3, 3, 9, 0), sent_today=5, last_sent=local(2026, 3, 3, 7, 59)) == Verdict(
        utc(2026, 3, 3, 2, 0), ""
    )


# --- Pacing and describe -----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_per_day": 0}, "max_per_day must be at least 1, not 0"),
        ({"min_gap": timedelta(0)}, "min_gap must be positive, not 0:00:00"),
    ],
)
def test_pacing_checks_itself(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=r"\A.*\Z") as caught:
        Pacing(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("pacing", "text"),
    [
        (EVERYTHING, "Mon-Fri 07:30-11:30, 13:30-17:00; no posts on public holidays; at most 6 a day; 60 min apart"),
        (Pacing(), "any time"),
        (Pacing(skip_holidays=True), "any time; no posts on public holidays"),
        (Pacing(max_per_day=1), "any time; at most 1 a day"),
        (Pacing(windows=(*OFFICE, parse_window("Sat 08:00-10:00"))), f"{OFFICE_TEXT}, Sat 08:00-10:00"),
        (Pacing(min_gap=timedelta(seconds=90)), "any time; 1 min 30 s apart"),
        (Pacing(min_gap=timedelta(seconds=45)), "any time; 45 s apart"),
        (Pacing(min_gap=timedelta(minutes=150)), "any time; 2 h 30 min apart"),
        (Pacing(min_gap=timedelta(days=1)), "any time; 24 h apart"),
    ],
)
def test_describe(pacing: Pacing, text: str) -> None:
    assert describe(pacing) == text


def test_one_entry_may_give_a_day_range_several_hours() -> None:
    assert parse_windows("Mon-Fri 07:30-11:30, 13:30-17:00") == (
        Window(frozenset(range(5)), time(7, 30), time(11, 30)),
        Window(frozenset(range(5)), time(13, 30), time(17, 0)),
    )
    with pytest.raises(ValueError, match=r"bad window 'Mon-Fri 07:30-11:30,': an empty time range"):
        parse_windows("Mon-Fri 07:30-11:30,")
    with pytest.raises(ValueError, match=r"bad window 'Mon-Fri 07:30-11:30, 25:00-26:00': no such time '25:00'"):
        parse_windows("Mon-Fri 07:30-11:30, 25:00-26:00")
