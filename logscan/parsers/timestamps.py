"""Turning log timestamps into epoch seconds, fast: every conversion is cached per hour."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone, tzinfo

MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}


def _local_zone() -> tzinfo:
    tz = datetime.now().astimezone().tzinfo
    return tz if tz is not None else UTC


class Clock:
    """Converts wall-clock fields in one zone to epoch seconds; caches the start of each hour.

    Pure: the reference time used to infer syslog years is given, never read from a clock.
    """

    __slots__ = ("_hours", "_ref_month", "_ref_year", "tz")

    def __init__(self, tz: tzinfo | None, reference_time: float) -> None:
        self.tz: tzinfo = tz if tz is not None else _local_zone()
        self._hours: dict[tuple[int, int, int, int], float] = {}
        self._ref_year = 1970
        self._ref_month = 1
        self.set_reference(reference_time)

    def set_reference(self, reference_time: float) -> None:
        """Date syslog lines against this moment (file mtime, or now for a live log)."""
        ref = datetime.fromtimestamp(reference_time, self.tz)
        self._ref_year, self._ref_month = ref.year, ref.month

    def local(self, year: int, month: int, day: int, hour: int, minute: int, sec: float) -> float:
        """Epoch seconds of a local wall-clock time; raises ValueError on impossible fields."""
        key = (year, month, day, hour)
        base = self._hours.get(key)
        if base is None:
            if len(self._hours) > 4096:
                self._hours.clear()
            base = datetime(year, month, day, hour, tzinfo=self.tz).timestamp()
            self._hours[key] = base
        if not (0 <= minute < 60 and 0 <= sec < 61):
            raise ValueError("minute or second out of range")
        return base + minute * 60 + sec

    def syslog(self, mon: str, day: int, hour: int, minute: int, sec: float) -> float:
        """RFC 3164 time (no year): the year is the reference year, or the one before."""
        month = MONTHS[mon]
        year = self._ref_year - 1 if month > self._ref_month else self._ref_year
        return self.local(year, month, day, hour, minute, sec)


def parse_offset(text: str) -> int | None:
    """Seconds east of UTC from `Z`, `+09:00`, `+0900` or `-05`; None if malformed."""
    if text in ("Z", "z"):
        return 0
    if len(text) < 3 or text[0] not in "+-":
        return None
    digits = text[1:].replace(":", "")
    if not digits.isdigit() or len(digits) not in (2, 4):
        return None
    hours, minutes = int(digits[:2]), int(digits[2:] or "0")
    if hours > 23 or minutes > 59:
        return None
    sign = -1 if text[0] == "-" else 1
    return sign * (hours * 3600 + minutes * 60)


_OFFSET_HOURS: dict[tuple[int, int, int, int, int], float] = {}


def utc_epoch(year: int, month: int, day: int, hour: int, minute: int, sec: float, offset_s: int) -> float:
    """Epoch seconds of a time given with an explicit UTC offset."""
    key = (year, month, day, hour, offset_s)
    base = _OFFSET_HOURS.get(key)
    if base is None:
        if len(_OFFSET_HOURS) > 4096:
            _OFFSET_HOURS.clear()
        base = datetime(year, month, day, hour, tzinfo=timezone(timedelta(seconds=offset_s))).timestamp()
        _OFFSET_HOURS[key] = base
    if not (0 <= minute < 60 and 0 <= sec < 61):
        raise ValueError("minute or second out of range")
    return base + minute * 60 + sec
