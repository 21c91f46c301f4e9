"""Compass and relative-direction arithmetic for street navigation.

Conventions used throughout :mod:`gym_virl`:

* World coordinates are metres in a local east-north frame: ``x`` grows to the
  east, ``y`` to the north.
* A *bearing* (or heading) is a compass angle in degrees, clockwise from
  north, in ``[0, 360)``: north 0, east 90, south 180, west 270.
* A *compass index* ``0..7`` names one of the eight compass directions, in
  the order of :data:`COMPASS`.

The reference code computed relative turns as a plain difference of
headings, so turning from 350 to 10 degrees came out as a left turn (defect
5 in REFERENCE.md). Every difference here goes through :func:`angle_diff`,
which wraps into ``(-180, 180]``.
"""

from __future__ import annotations

import math

#: The eight compass words, clockwise from north; index ``i`` is ``45 * i`` degrees.
COMPASS: tuple[str, ...] = (
    "north",
    "northeast",
    "east",
    "southeast",
    "south",
    "southwest",
    "west",
    "northwest",
)

#: Relative turn words of the rule-variant action space, keyed by the turn in
#: compass steps (positive: clockwise, i.e. to the right).
RELATIVE_TURNS: dict[int, str] = {
    -2: "left",
    -1: "slightly left",
    1: "slightly right",
    2: "right",
}

#: The relative turn words in the order the prompt lists them.
RELATIVE_WORDS: tuple[str, ...] = ("left", "right", "slightly left", "slightly right")

#: Where something stands relative to the way one faces, in 45-degree sectors
#: clockwise from straight ahead.
RELATIVE_SIDES: tuple[str, ...] = (
    "front",
    "right front",
    "right",
    "right back",
    "back",
    "left back",
    "left",
    "left front",
)

#: Bearings closer than this many degrees to a compass bin edge (22.5 + 45k)
#: are treated as ambiguous by :func:`snap_bearing` and resolved with the
#: tie-breaking rule described there.
BIN_EDGE_MARGIN: float = 3.0


def wrap360(angle: float) -> float:
    """``angle`` in degrees, wrapped into ``[0, 360)``."""
    wrapped = math.fmod(angle, 360.0)
    if wrapped < 0:
        wrapped += 360.0
    return 0.0 if wrapped >= 360.0 else wrapped


def angle_diff(to_bearing: float, from_bearing: float) -> float:
    """Signed turn in degrees from ``from_bearing`` to ``to_bearing``, in ``(-180, 180]``.

    Positive means clockwise (a right turn).

    Example:
        >>> angle_diff(10, 350)
        20.0
        >>> angle_diff(350, 10)
        -20.0
        >>> angle_diff(180, 0)
        180.0
    """
    d = wrap360(to_bearing - from_bearing)
    return d - 360.0 if d > 180.0 else d


def bearing(dx: float, dy: float) -> float:
    """Compass bearing of the vector ``(dx, dy)`` (east, north), in ``[0, 360)``."""
    return wrap360(math.degrees(math.atan2(dx, dy)))


def bearing_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Compass bearing from point ``a`` to point ``b``."""
    return bearing(b[0] - a[0], b[1] - a[1])


def unit_vector(bearing_deg: float) -> tuple[float, float]:
    """The east-north unit vector pointing along ``bearing_deg``."""
    rad = math.radians(bearing_deg)
    return (math.sin(rad), math.cos(rad))


def _near_bin_edge(bearing_deg: float, margin: float) -> bool:
    offset = math.fmod(wrap360(bearing_deg) + 22.5, 45.0)
    return offset < margin or offset > 45.0 - margin


def snap_bearing(
    bearing_deg: float,
    *,
    previous: tuple[float, int] | None = None,
    margin: float = BIN_EDGE_MARGIN,
) -> int:
    """The compass index (0..7) a bearing is announced as.

    Away from bin edges this is simply the nearest of the eight directions.
    A bearing within ``margin`` degrees of a bin edge (22.5 + 45k) is
    ambiguous: a street at 23 degrees could fairly be called north or
    northeast. When the bearing is the next leg of a route, ``previous``
    gives the previous leg as ``(true bearing, compass index)`` and the
    ambiguity is resolved so that the announced turn (in compass steps)
    matches the true turn best; remaining ties, and ambiguous bearings
    without ``previous``, go to the nearer bin, exact ties clockwise. The
    rule is deterministic, so the same geometry is always described the same
    way.

    Example:
        >>> snap_bearing(44.0), snap_bearing(0.0), snap_bearing(337.6)
        (1, 0, 0)
        >>> snap_bearing(22.5)  # exactly on an edge: clockwise
        1
        >>> # 23.0 alone is northeast, but after a leg announced as west
        >>> # (true 290) the true turn is +93: two steps right (north) fits.
        >>> snap_bearing(23.0), snap_bearing(23.0, previous=(290.0, 6))
        (1, 0)
    """
    b = wrap360(bearing_deg)
    nearest = int(math.floor(b / 45.0 + 0.5)) % 8
    if previous is None or not _near_bin_edge(b, margin):
        return nearest
    edge = int(round((b - 22.5) / 45.0))  # the edge at 22.5 + 45 * edge
    ccw_bin, cw_bin = edge % 8, (edge + 1) % 8
    prev_bearing, prev_index = previous
    true_turn = angle_diff(b, prev_bearing)

    def mismatch(candidate: int) -> float:
        return abs(compass_steps(candidate, prev_index) * 45.0 - true_turn)

    m_ccw, m_cw = mismatch(ccw_bin), mismatch(cw_bin)
    if abs(m_ccw - m_cw) < 1e-9:
        return nearest
    return cw_bin if m_cw < m_ccw else ccw_bin


def compass_steps(to_index: int, from_index: int) -> int:
    """Signed turn in compass steps (45 degrees each) in ``[-3, 4]``; + is clockwise.

    Example:
        >>> compass_steps(1, 7)  # northwest -> northeast: 90 degrees right
        2
        >>> compass_steps(7, 1), compass_steps(4, 0)
        (-2, 4)
    """
    steps = (to_index - from_index) % 8
    return steps - 8 if steps > 4 else steps


def relative_turn_word(to_index: int, from_index: int) -> str | None:
    """The relative-action word for turning between two compass indices.

    Returns ``None`` for turns the relative action space cannot express
    (no turn, 135 degrees, or a U-turn).

    Example:
        >>> relative_turn_word(0, 6)  # west -> north: 90 degrees clockwise
        'right'
        >>> relative_turn_word(7, 0)  # north -> northwest
        'slightly left'
        >>> relative_turn_word(4, 0) is None
        True
    """
    return RELATIVE_TURNS.get(compass_steps(to_index, from_index))


def angle_turn_word(turn_deg: float) -> str | None:
    """The relative-action word for a turn of ``turn_deg`` degrees, by the reference's angle rule.

    The reference code names a turn by its angle: more than 45 degrees is
    ``left`` or ``right``, anything else ``slightly left`` or ``slightly
    right`` (exactly 45 degrees is still "slightly"). Here the angle is
    wrapped into ``(-180, 180]`` first (the reference did not wrap: defect 5),
    so a U-turn is ``right``, and a turn of 0 degrees has no word (``None``):
    the reference called it ``slightly left``.

    Example:
        >>> [angle_turn_word(a) for a in (30, 60, -90, 135, 180, -45, 0)]
        ['slightly right', 'right', 'left', 'right', 'right', 'slightly left', None]
        >>> angle_turn_word(10 - 350)  # 350 -> 10 degrees: 20 degrees to the right
        'slightly right'
    """
    d = angle_diff(turn_deg, 0.0)
    if d == 0.0:
        return None
    if d < -45.0:
        return "left"
    if d > 45.0:
        return "right"
    return "slightly left" if d < 0 else "slightly right"


def relative_side(heading_deg: float, target_bearing: float) -> str:
    """Where something at ``target_bearing`` stands for someone facing ``heading_deg``.

    One of :data:`RELATIVE_SIDES` (eight 45-degree sectors centred on
    front, right front, right, ...).

    Example:
        >>> relative_side(0, 50), relative_side(350, 10), relative_side(90, 0)
        ('right front', 'front', 'left')
    """
    d = wrap360(target_bearing - heading_deg)
    return RELATIVE_SIDES[int(math.floor(d / 45.0 + 0.5)) % 8]


def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Euclidean distance between two points in metres."""
    return math.hypot(b[0] - a[0], b[1] - a[1])


#: Mean Earth radius in metres, for the local projection of real route data.
EARTH_RADIUS_M: float = 6_371_008.8


def latlng_to_local(
    lat: float, lng: float, origin: tuple[float, float]
) -> tuple[float, float]:
    """Project ``(lat, lng)`` to local east-north metres around ``origin``.

    An equirectangular projection: accurate to well under a metre over the
    few hundred metres a route spans.
    """
    lat0, lng0 = origin
    x = math.radians(lng - lng0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    y = math.radians(lat - lat0) * EARTH_RADIUS_M
    return (x, y)


#: WGS84 ellipsoid: equatorial radius (m) and flattening.
WGS84_A: float = 6_378_137.0
WGS84_F: float = 1 / 298.257223563


def ellipsoid_distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance in metres between two nearby ``(lat, lng)`` points on the WGS84 ellipsoid.

    Uses the ellipsoid's radii of curvature at the mean latitude: within a
    millimetre of the geodesic distance over the few hundred metres of a leg
    (the reference code measures legs with geodesics; a sphere is off by up
    to 0.5%).
    """
    e2 = WGS84_F * (2 - WGS84_F)
    phi = math.radians((a[0] + b[0]) / 2)
    w = 1 - e2 * math.sin(phi) ** 2
    meridian = WGS84_A * (1 - e2) / w**1.5
    normal = WGS84_A / math.sqrt(w)
    dy = math.radians(b[0] - a[0]) * meridian
    dx = math.radians(b[1] - a[1]) * normal * math.cos(phi)
    return math.hypot(dx, dy)


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two ``(lat, lng)`` points."""
    lat1, lng1 = map(math.radians, a)
    lat2, lng2 = map(math.radians, b)
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
