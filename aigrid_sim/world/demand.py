"""Where and when demand comes from: city demand weights and local UTC offsets.

Two questions about the origins of a world, answered once when it is built:

* **Local time.** Each bundled city keeps its IANA time zone name (``Europe/Paris``). Its UTC
  offset is read with the standard library's :mod:`zoneinfo` at the run's start instant,
  ``start_date`` at ``start_utc_h`` UTC, so daylight saving follows the calendar: Paris is UTC+1
  on 2026-01-15 and UTC+2 on 2026-07-15. The offset is held for the whole run (runs last hours;
  a run that crosses a DST switch keeps the offset of its start). The ``tzdata`` package supplies
  the zone database where the system has none (Windows, slim containers).
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

import numpy as np

from aigrid_sim.errors import ConfigError

#: The default ``start_date``: a mid-January weekday, northern-hemisphere standard time. It is
#: also the date of the offsets the city table used to freeze, so default runs did not move.
DEFAULT_START_DATE = "2026-01-15"


def parse_start_date(value, key: str = "start_date") -> dt.date:
    """An ISO calendar date (``YYYY-MM-DD``) from a config value.

    Raises:
        ConfigError: naming ``key`` when ``value`` is not such a date.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(f"key '{key}': must be an ISO date YYYY-MM-DD, e.g. "
                          f"{DEFAULT_START_DATE} (got {value!r})") from None


def start_instant(start_date, start_utc_h: float) -> dt.datetime:
    """The UTC instant of simulated time 0: ``start_date`` plus ``start_utc_h`` hours."""
    day = parse_start_date(start_date)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc) + \
        dt.timedelta(hours=float(start_utc_h))


@functools.lru_cache(maxsize=4096)
def _offset_h(zone: str, when: dt.datetime) -> float:
    return when.astimezone(zoneinfo.ZoneInfo(zone)).utcoffset().total_seconds() / 3600.0


def utc_offsets_h(zones, when: dt.datetime, where: str = "timezone") -> np.ndarray:
    """UTC offset in hours of each IANA zone at the instant ``when`` (DST included).

    Each distinct zone is looked up once, so the 34,006 cities of the 15k table (about 400
    zones) take milliseconds.

    Args:
        zones: IANA zone names (``Asia/Kolkata``), one per origin.
        when: An aware UTC datetime (:func:`start_instant`).
        where: What to name in the error message.

    Raises:
        ConfigError: a zone name zoneinfo does not know.
    """
    zones = np.asarray(zones, dtype=object)
    uniq, inv = np.unique(zones.astype(str), return_inverse=True)
    out = np.empty(len(uniq))
    for i, z in enumerate(uniq):
        try:
            out[i] = _offset_h(z, when)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{where}: unknown IANA time zone {str(z)!r} "
                              f"(e.g. 'Europe/Paris', 'America/New_York')") from None
    return out[inv].reshape(zones.shape)
