"""Named areas for data sovereignty: a country, a group of countries, or a continent.

An *area* is a set of ISO 3166-1 alpha-2 country codes. A name resolves, in this order, to:

- a named group (``EU``: the 27 member states; ``EEA``: the EU plus Iceland, Liechtenstein and
  Norway; ``GCC``: the six Gulf Cooperation Council states; ``ASEAN``; ``USMCA``);
- a continent, by the names used in results (``Europe``, ``Asia``, ``Africa``, ``North America``,
  ``South America``, ``Oceania``), from the bundled GeoNames country table;
- one country code (``IN``, ``DE``, ...), which must exist in that table.

Anything else is a :class:`~aigrid_sim.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import functools

from aigrid_sim.errors import ConfigError

#: Named groups of countries (membership as of 2026).
GROUPS: dict[str, frozenset[str]] = {
    "EU": frozenset("AT BE BG HR CY CZ DK EE FI FR DE GR IE IT LV LT LU MT NL PL PT RO SK SI "
                    "ES SE".split()),
    "GCC": frozenset("AE BH KW OM QA SA".split()),
    "ASEAN": frozenset("BN KH ID LA MY MM PH SG TH VN".split()),
    "USMCA": frozenset("US CA MX".split()),
}
GROUPS["EEA"] = GROUPS["EU"] | frozenset({"IS", "LI", "NO"})


@functools.cache
def _countries() -> dict[str, str]:
    """ISO alpha-2 code -> continent name, from the bundled GeoNames country table."""
    from aigrid_sim.world.build import CONTINENTS, read_data

    t = read_data("world_countries.csv")
    return {str(c): CONTINENTS.get(str(k), "Unknown")
            for c, k in zip(t["iso2"], t["continent_code"], strict=True)}


def known_country(code: str) -> bool:
    """Whether ``code`` is an ISO alpha-2 code of the bundled country table."""
    return code in _countries()


def resolve(name: str, key: str) -> frozenset[str]:
    """The country codes of the area called ``name``.

    Args:
        name: A group (``EU``), a continent (``Europe``) or a country code (``IN``).
        key: The config key the name came from, for the error message.

    Raises:
        ConfigError: an unknown name.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"key '{key}': an area must be a non-empty string, got {name!r}")
    if name in GROUPS:
        return GROUPS[name]
    countries = _countries()
    by_continent = frozenset(c for c, cont in countries.items() if cont == name)
    if by_continent:
        return by_continent
    if name in countries:
        return frozenset({name})
    raise ConfigError(
        f"key '{key}': unknown area {name!r}; use an ISO 3166-1 alpha-2 country code (e.g. IN), "
        f"a group ({', '.join(sorted(GROUPS))}) or a continent (Europe, Asia, Africa, "
        f"North America, South America, Oceania)")
