"""FITS headers as VisiOmatic v2 can read them: LATPOLE and LONPOLE left out where the projection implies them.

VisiOmatic v2's WCS reader assigns LATPOLE to ``projparam.natpol.lat`` (a
typo for ``natpole``) and throws, leaving a black map, on any header that
has the card; astropy writes LATPOLE and LONPOLE into every header. Both
are defaults most of the time (FITS WCS Paper II, Calabretta & Greisen
2002, section 2.4): LONPOLE is 0 when delta0 >= theta0 and 180 otherwise,
and LATPOLE only picks one of two possible celestial poles, never used by
the zenithal projections (theta0 = 90: the pole is delta0 itself). A card
is left out only when the coordinates every WCS reader computes stay the
same without it; a header this module does not fully understand is kept as it is.
"""

from __future__ import annotations

import functools
import math

_CARD = 80
# Native latitude theta0 of the fiducial point by projection code (Paper II, and the
# zenithal distortion conventions TPV, TNX, ZPX); conics carry theirs in PVi_1 of latitude.
_ZENITHAL = {"AZP", "SZP", "TAN", "STG", "SIN", "ARC", "ZPN", "ZEA", "AIR", "TPV", "TNX", "ZPX", "XPH"}
_EQUATORIAL = {"CYP", "CEA", "CAR", "MER", "SFL", "PAR", "MOL", "AIT", "BON", "PCO", "TSC", "CSC", "QSC", "HPX"}
_CONIC = {"COP", "COE", "COD", "COO"}
# Projections whose longitude-axis PV cards are distortion coefficients, not the fiducial point.
_POLYNOMIAL = {"TAN", "TPV", "TNX", "ZPX"}
_TOLERANCE = 1e-9  # degrees


@functools.lru_cache(maxsize=256)
def without_implied_poles(text: str) -> str:
    """``text`` (80-character cards, concatenated or one per line) without the LATPOLE and LONPOLE cards
    that only repeat what the projection implies."""
    if "LATPOLE " not in text and "LONPOLE " not in text:
        return text
    lined = "\n" in text
    cards = text.split("\n") if lined else [text[i : i + _CARD] for i in range(0, len(text), _CARD)]
    values = {key: value for key, value in map(_key_value, cards) if key}
    implied = _implied(values)
    kept = [card for card in cards if card[:8].strip() not in implied]
    if len(kept) == len(cards):
        return text
    return ("\n" if lined else "").join(kept)


def _key_value(card: str) -> tuple[str, str | float | None]:
    """A card's keyword and value: a string unquoted, a finite number, or None for anything else."""
    key = card[:8].strip()
    if card[8:10] != "= ":
        return "", None
    raw = card[10:].strip()
    if raw.startswith("'"):
        end = raw.find("'", 1)
        while end > 0 and raw[end + 1 : end + 2] == "'":
            end = raw.find("'", end + 2)
        return key, raw[1:end].replace("''", "'").rstrip() if end > 0 else None
    try:
        number = float(raw.split("/")[0].strip().replace("D", "E"))
    except ValueError:
        return key, None
    return key, number if math.isfinite(number) else None


def _axes(values: dict[str, str | float | None]) -> tuple[int, int, str] | None:
    """(longitude axis, latitude axis, projection code) of a celestial pair in axes 1 and 2, else None."""
    types = [str(values.get(f"CTYPE{i}") or "") for i in (1, 2)]
    kinds = [_kind(t) for t in types]
    code = types[0][5:8]
    if sorted(kinds) != ["lat", "lon"] or types[1][5:8] != code:
        return None
    lon = kinds.index("lon") + 1
    return lon, 3 - lon, code


def _kind(ctype: str) -> str:
    head = ctype[:4]
    if head == "RA--" or head[1:] == "LON" or head[2:] == "LN":
        return "lon"
    if head == "DEC-" or head[1:] == "LAT" or head[2:] == "LT":
        return "lat"
    return ""


def _implied(values: dict[str, str | float | None]) -> set[str]:
    """The pole cards that equal their defaults (or that the projection never reads)."""
    axes = _axes(values)
    if axes is None:
        return set()
    lon, lat, code = axes
    if code not in _POLYNOMIAL and any(f"PV{lon}_{m}" in values for m in range(5)):
        return set()  # the fiducial point (or the poles) moved through PV cards: keep what is there
    conic = values.get(f"PV{lat}_1")
    if code in _ZENITHAL:
        theta0 = 90.0
    elif code in _EQUATORIAL:
        theta0 = 0.0
    elif code in _CONIC and isinstance(conic, float):
        theta0 = conic
    else:
        return set()
    delta0, lonpole, latpole = values.get(f"CRVAL{lat}", 0.0), values.get("LONPOLE"), values.get("LATPOLE")
    if not isinstance(delta0, float) or not isinstance(lonpole, float | None):
        return set()
    implied = set()
    default_phi = 0.0 if delta0 >= theta0 else 180.0
    phi_p = default_phi if lonpole is None else lonpole
    if lonpole is not None and abs((phi_p - default_phi + 180.0) % 360.0 - 180.0) < _TOLERANCE:
        implied.add("LONPOLE")
    if isinstance(latpole, float) and (
        theta0 == 90.0 or _pole(theta0, delta0, phi_p, latpole) == _pole(theta0, delta0, phi_p, 90.0)
    ):
        implied.add("LATPOLE")
    return implied


def _pole(theta0: float, delta0: float, phi_p: float, latpole: float) -> float | None:
    """The celestial latitude of the native pole that LATPOLE picks (Paper II, equations 8 to 10), rounded.

    None when there is no solution; the one solution when only one lies in [-90, 90].
    """
    t0, d0, dphi = math.radians(theta0), math.radians(delta0), math.radians(phi_p)  # phi0 = 0
    base = math.atan2(math.sin(t0), math.cos(t0) * math.cos(dphi))
    norm = math.sqrt(1.0 - (math.cos(t0) * math.sin(dphi)) ** 2)
    if norm == 0.0 or abs(math.sin(d0) / norm) > 1.0:
        return None
    spread = math.acos(math.sin(d0) / norm)
    found = [math.degrees(base + sign * spread) for sign in (1.0, -1.0)]
    valid = [(abs(d - latpole), round(d, 9)) for d in found if abs(d) <= 90.0 + _TOLERANCE]
    return min(valid)[1] if valid else None
