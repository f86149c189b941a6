"""Sizes and durations as scientists write them, converted honestly to the broker's units."""

from __future__ import annotations

from datetime import timedelta

import pytest

from execplanner_widgets.model.units import (
    UnitError,
    format_duration,
    format_size,
    human_duration,
    parse_duration,
    parse_size_gib,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (8, 8),
        ("8", 8),
        ("32Gi", 32),
        ("32GiB", 32),
        ("32 gib", 32),
        ("512Mi", 1),  # half a GiB is rounded up: a minimum must be met
        ("1024Mi", 1),
        ("1025Mi", 2),
        ("8G", 8),  # 8e9 bytes = 7.45 GiB -> 8
        ("360G", 336),  # 335.3 GiB -> 336
        ("1.5T", 1397),  # 1.5e12 bytes = 1396.98 GiB
        ("1.5Ti", 1536),
        ("2TiB", 2048),
        (0, 0),
        ("0.5", 1),
    ],
)
def test_sizes_convert_to_whole_gib_rounding_up(value, expected):
    assert parse_size_gib(value) == expected


def test_numbers_with_explicit_units():
    assert parse_size_gib(2048, units="MiB") == 2
    assert parse_size_gib(3, units="TiB") == 3072


@pytest.mark.parametrize("value", ["eight", "8 gigs", "8X", "-1", "", True, None, [8], "1.2.3G"])
def test_bad_sizes_say_what_was_expected(value):
    with pytest.raises(UnitError) as error:
        parse_size_gib(value)
    assert "size" in str(error.value) or "unit" in str(error.value)


def test_negative_number_is_refused():
    with pytest.raises(UnitError, match="negative"):
        parse_size_gib(-4)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PT9H30M", timedelta(hours=9, minutes=30)),
        ("P2D", timedelta(days=2)),
        ("P1W", timedelta(weeks=1)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("PT0S", timedelta(0)),
        ("PT1.5S", timedelta(seconds=1.5)),
        ("10m", timedelta(minutes=10)),
        ("9h30m", timedelta(hours=9, minutes=30)),
        ("9h 30m", timedelta(hours=9, minutes=30)),
        ("2d", timedelta(days=2)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        (3600, timedelta(hours=1)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_durations_in_iso_8601_and_shorthand(value, expected):
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["P1Y", "P2M", "P1M2DT3H"])
def test_calendar_durations_are_refused_with_advice(value):
    with pytest.raises(UnitError, match="calendar"):
        parse_duration(value)


@pytest.mark.parametrize("value", ["soon", "PT", "P", "", "h", "10 minutes please", -5, None])
def test_bad_durations_say_what_was_expected(value):
    with pytest.raises(UnitError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=9, minutes=30), "PT9H30M"),
        (timedelta(days=2), "P2D"),
        (timedelta(days=1, seconds=1), "P1DT1S"),
        (timedelta(0), "PT0S"),
        (timedelta(seconds=1.5), "PT1.5S"),
    ],
)
def test_durations_format_as_canonical_iso_8601(value, text):
    assert format_duration(value) == text
    assert parse_duration(text) == value


def test_readable_forms():
    assert human_duration(timedelta(hours=9, minutes=30)) == "9h 30m"
    assert human_duration(None) == "-"
    assert format_size(2048) == "2 TiB"
    assert format_size(8) == "8 GiB"


class _Text(str):
    """A string that is not exactly ``str`` (what some YAML and XML readers hand over): read as a
    ``str`` is, to the same instant in UTC."""


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-07T03:04:55Z",
        "2026-12-07T03:04:55+01:00",
        "2026-12-07T03:04:55-05:30",
        "2026-12-07T03:04:55+23:59",
        "2026-12-07T03:04:55",  # no zone: UTC, the broker's convention
        "2026-12-07T03:04:55.123Z",
        "2026-12-07T03:04:55.123456+00:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "2024-02-29T12:00:00Z",
    ],
)
def test_instants_read_to_the_same_moment_in_utc_from_any_string(text):
    from datetime import timezone

    from execplanner_widgets.model.types import format_instant, parse_instant

    quick, general = parse_instant(text), parse_instant(_Text(text))
    assert quick == general and quick.tzinfo is timezone.utc and general.utcoffset() == timedelta(0)
    assert parse_instant(format_instant(quick)) == quick


@pytest.mark.parametrize(
    "text", ["2026-02-30T00:00:00Z", "2026-12-07T24:00:00Z", "2026-12-07T23:59:60Z", "2026-13-01T00:00:00Z"]
)
def test_impossible_instants_are_refused_saying_what_was_expected(text):
    from execplanner_widgets.model.types import parse_instant

    with pytest.raises(ValueError, match="expected an ISO 8601 date and time") as quick:
        parse_instant(text)
    with pytest.raises(ValueError) as general:
        parse_instant(_Text(text))
    assert str(quick.value) == str(general.value)


def test_instants_are_written_as_format_instant_writes_them():
    from datetime import datetime, timezone

    from execplanner_widgets.model import ComponentMetadata
    from execplanner_widgets.model.types import format_instant

    for moment in (
        datetime(2026, 12, 7, 3, 4, 55, tzinfo=timezone.utc),
        datetime(2026, 12, 7, 3, 4, 55, 120000, tzinfo=timezone.utc),
    ):
        meta = ComponentMetadata(created=moment)
        assert meta.to_wire()["created"] == format_instant(moment)
        assert f'"created":"{format_instant(moment)}"'.encode() in meta.to_wire_json()
