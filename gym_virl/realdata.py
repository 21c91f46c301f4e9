"""Real V-IRL route data: loading, validation and panorama views.

``gym.make("VIRL-L-v0", data_dir=PATH)`` (or ``VIRL-VL-v0``) replaces the
generated city by route data in the layout of V-IRL and the paper's release::

    PATH/
      route_infos.json          [routes, count]
      gps_pano_mapping.pkl      {(lat, lng): pano_id, ...}   (image mode)
      street_views/
        {pano_id}.jpg           equirectangular panorama
        {pano_id}.metadata.json {"rotation": ...}             (north offset)

Each route has ``start_place.relocated_geocode``, ``dest_place`` (``name``,
``geocode``), ``init_heading`` (0 means "any"), ``route_results``
(``geocode_list``: the turning intersections then the destination;
``landmark_list``) and ``milestone_info``: one block per leg, each shaped
like a JSON object with quoted keys and string values and a trailing comma
(so not JSON), e.g. ``"landmarks": "Harbor Bank is on your left front"`` and
``"to_next_intersection_heading": "90 (east)"``. A block's landmark stands at
the end of its leg; the last block names the destination.

Two sets of rules lay out the rail (the env's ``rail_rules``):

* ``"reference"`` (the default for real data) labels the route as the
  paper's code does, except for its listed defects. Each episode starts
  facing ``init_heading``, or a heading drawn from the whole degrees 0..359
  where it is 0. Every key point before the destination has
  ``turn_direction(x)`` as its gold action, also where the route goes
  straight on; relative words follow the turn's angle (more than 45
  degrees: left or right, else slightly left or right; wrapped at 360
  degrees, and a 0-degree turn is ``forward()`` in the relative space).
  Forward points are tried at the fractions 1/5 .. 5/5 of each leg; one
  within 8 m of either end of its leg is left out (so at most 4 per leg),
  and each of the others is dropped with probability 0.5, drawn anew each
  episode from the env's random generator. Where the folder has
  ``gps_pano_mapping.pkl`` the points are first moved to their nearest
  panorama within 20 m (a forward point without one is left out), as the
  reference does, in text mode too. Distances are measured on the WGS84
  ellipsoid.
* ``"gengym"`` builds the rail like a generated one: up to 5 forward
  points per leg at ``j / 6``, dropped once per route; ``forward()`` at a
  key point where the compass word does not change; relative words from
  compass steps. Where ``init_heading`` is 0 the starting heading is drawn
  (deterministically per route) so that the first turn is 45 or 90
  degrees. A route whose turns cannot be said in the relative action space
  (135 or 180 degrees) is left out of the relative variant's splits;
  :meth:`VirlDataset.excluded` says which and why.

``docs/reference-differences.md`` lists every difference from the paper's code.

Safety. The pickle is read with :class:`RestrictedUnpickler`, which builds
only plain containers, numbers and strings and refuses every global (so no
code can run while loading it). Malformed files raise :class:`VirlDataError`
naming the file and the field. Missing imagery only matters in image mode,
where it raises ``FileNotFoundError`` naming the panorama.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from gengym_core.spaces import to_prompt_text
from gym_virl.geometry import (
    COMPASS,
    RELATIVE_SIDES,
    compass_steps,
    ellipsoid_distance_m,
    haversine_m,
    latlng_to_local,
    snap_bearing,
    wrap360,
)
from gym_virl.routes import (
    FORWARD,
    REFERENCE_CLEARANCE_M,
    STOP,
    TURN,
    ForwardCandidate,
    Observed,
    RailPoint,
    Route,
    RouteConfig,
    move_sentence,
    pair_split,
    reference_fractions,
    reference_route,
    turn_sentence,
)

#: Longest route accepted: key points and rail points. Keeps prompts bounded.
MAX_KEY_POINTS: int = 40
MAX_RAIL_POINTS: int = 200
#: A panorama serves a rail point when it lies within this many metres.
PANO_RADIUS_M: float = 20.0
#: Longest leg accepted, in metres (a ``distance`` beyond it is malformed).
MAX_LEG_M: float = 100_000.0
#: Largest panorama accepted, in pixels (width x height).
MAX_PANO_PIXELS: int = 64_000_000
#: Rail parameters for real routes (the reference's 5 candidates a leg, dropped with p = 0.5).
REAL_RAIL = RouteConfig()


class VirlDataError(ValueError):
    """A route data file is malformed; the message names the file and the field."""


# ---------------------------------------------------------------------------
# restricted pickle
# ---------------------------------------------------------------------------


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global: only plain data can be built.

    Containers (dict, list, tuple, set), numbers, strings, bytes, booleans
    and ``None`` are encoded by pickle without globals; anything else (class
    instances, functions, numpy arrays) needs :meth:`find_class`, which
    raises here.
    """

    def find_class(self, module: str, name: str):  # noqa: D102
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: only plain containers, numbers and "
            "strings are allowed"
        )

    def persistent_load(self, pid: Any):  # noqa: D102
        raise pickle.UnpicklingError("refusing persistent ids")


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    Example:
        >>> restricted_loads(pickle.dumps({(40.7, -74.0): "abc"}))
        {(40.7, -74.0): 'abc'}
        >>> restricted_loads(pickle.dumps(complex(1, 2)))
        Traceback (most recent call last):
        ...
        _pickle.UnpicklingError: refusing to load global builtins.complex: only plain containers, numbers and strings are allowed
    """
    return RestrictedUnpickler(io.BytesIO(data)).load()


def load_pano_mapping(path: Path) -> dict[tuple[float, float], str]:
    """Read ``gps_pano_mapping.pkl`` safely and check its shape."""
    try:
        raw = restricted_loads(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
            AttributeError, ImportError, MemoryError, RecursionError) as err:
        raise VirlDataError(f"{path}: not a readable pano mapping ({err})") from None
    if not isinstance(raw, dict):
        raise VirlDataError(f"{path}: expected a dict from (lat, lng) to pano id, got {type(raw).__name__}")
    out: dict[tuple[float, float], str] = {}
    for key, value in raw.items():
        if (not isinstance(key, (tuple, list)) or len(key) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in key)):
            raise VirlDataError(f"{path}: key {key!r} is not a (lat, lng) pair")
        if not (all(map(math.isfinite, key)) and -90 <= key[0] <= 90 and -180 <= key[1] <= 180):
            raise VirlDataError(f"{path}: key {key!r} is not a (lat, lng) pair in range")
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_\-]{1,128}", value):
            raise VirlDataError(f"{path}: pano id {value!r} for {key!r} is not a plain id")
        out[(float(key[0]), float(key[1]))] = value
    return out


# ---------------------------------------------------------------------------
# route_infos.json
# ---------------------------------------------------------------------------


_BLOCK = re.compile(r"\{(.*?)\}", re.DOTALL)
_PAIR = re.compile(r'"([^"\n]+)"\s*:\s*"([^"\n]*)"')
_LANDMARK = re.compile(
    r"^(?P<name>.+?)\s+is\s+on\s+your\s+(?P<side>" + "|".join(sorted(RELATIVE_SIDES, key=len, reverse=True))
    + r")\s*\.?\s*$",
    re.IGNORECASE,
)
_HEADING = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:\(\s*([A-Za-z]+)\s*\))?\s*$")
_DISTANCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:m|meters?|metres?)?\s*$", re.IGNORECASE)


def parse_milestones(text: str, where: str) -> list[dict[str, str]]:
    """Split ``milestone_info`` into blocks of ``key -> value`` strings.

    Example:
        >>> blocks = parse_milestones('{\\n"intersection_idx": "1",\\n"landmarks": "A is on your left",\\n}', "x")
        >>> blocks[0]["landmarks"]
        'A is on your left'
    """
    if not isinstance(text, str):
        raise VirlDataError(f"{where}: milestone_info must be a string")
    blocks = [dict(_PAIR.findall(m.group(1))) for m in _BLOCK.finditer(text)]
    if not blocks:
        raise VirlDataError(f"{where}: milestone_info holds no {{...}} blocks")
    return blocks


def _latlng(value: Any, where: str) -> tuple[float, float]:
    if isinstance(value, dict) and {"lat", "lng"} <= set(value):
        value = (value["lat"], value["lng"])
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise VirlDataError(f"{where}: expected [lat, lng], got {value!r}")
    lat, lng = float(value[0]), float(value[1])
    if not (-90 <= lat <= 90 and -180 <= lng <= 180) or not all(map(math.isfinite, (lat, lng))):
        raise VirlDataError(f"{where}: [lat, lng] out of range: {value!r}")
    return lat, lng


def _field(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise VirlDataError(f"{where}: missing field {key!r}")
    return obj[key]


def _landmark(text: str) -> tuple[str, str] | None:
    """``(name, side)`` from "X is on your left front"; ``None`` for "no landmark"."""
    text = text.strip()
    if not text or re.match(r"^no\s+landmarks?\b", text, re.IGNORECASE):
        return None
    m = _LANDMARK.match(text)
    if m:
        return to_prompt_text(m.group("name").strip(), 60), m.group("side").lower()
    return to_prompt_text(text, 60), ""


def _heading(text: str, where: str) -> tuple[float, int]:
    m = _HEADING.match(text)
    if not m:
        raise VirlDataError(f"{where}: to_next_intersection_heading {text!r} is not like '90 (east)'")
    degrees = float(m.group(1))
    if not math.isfinite(degrees):
        raise VirlDataError(f"{where}: to_next_intersection_heading {text[:40]!r} is not a finite angle")
    degrees = wrap360(degrees)
    word = (m.group(2) or "").lower()
    if word and word not in COMPASS:
        raise VirlDataError(f"{where}: unknown compass word {word!r}")
    return degrees, COMPASS.index(word) if word else snap_bearing(degrees)


@dataclass(frozen=True)
class _RawRoute:
    """One route of ``route_infos.json``, validated."""

    index: int
    start_name: str
    dest_name: str
    start: tuple[float, float]
    key_points: tuple[tuple[float, float], ...]  # intersections then destination
    headings: tuple[tuple[float, int], ...]  # per leg: degrees, compass index
    landmarks: tuple[tuple[str, str] | None, ...]  # per leg end
    distances: tuple[float | None, ...]
    init_heading: float


def _parse_route(raw: Any, index: int, file: str) -> _RawRoute:
    where = f"{file}: route {index}"
    start_place = _field(raw, "start_place", where)
    start = _latlng(_field(start_place, "relocated_geocode", f"{where}.start_place"),
                    f"{where}.start_place.relocated_geocode")
    dest = _field(raw, "dest_place", where)
    dest_name = _field(dest, "name", f"{where}.dest_place")
    if not isinstance(dest_name, str) or not dest_name.strip():
        raise VirlDataError(f"{where}.dest_place.name: expected a non-empty string")
    results = _field(raw, "route_results", where)
    geocodes = _field(results, "geocode_list", f"{where}.route_results")
    if not isinstance(geocodes, list) or not geocodes:
        raise VirlDataError(f"{where}.route_results.geocode_list: expected a non-empty list")
    key_points = tuple(_latlng(g, f"{where}.route_results.geocode_list[{k}]") for k, g in enumerate(geocodes))
    if len(key_points) + 1 > MAX_KEY_POINTS:
        raise VirlDataError(f"{where}: {len(key_points) + 1} key points; at most {MAX_KEY_POINTS} are supported")
    blocks = parse_milestones(_field(raw, "milestone_info", where), f"{where}.milestone_info")
    if len(blocks) != len(key_points):
        raise VirlDataError(
            f"{where}.milestone_info: {len(blocks)} blocks for {len(key_points)} entries of geocode_list "
            "(one block per leg is expected)"
        )
    headings, landmarks, distances = [], [], []
    for k, block in enumerate(blocks):
        bw = f"{where}.milestone_info block {k + 1}"
        headings.append(_heading(_field(block, "to_next_intersection_heading", bw), bw))
        landmarks.append(_landmark(block.get("landmarks", "")))
        m = _DISTANCE.match(block.get("distance", ""))
        distance = float(m.group(1)) if m else None
        if distance is not None and not distance <= MAX_LEG_M:
            raise VirlDataError(f"{bw}: distance {block['distance'][:40]!r} is not a street distance "
                                f"(at most {MAX_LEG_M:g} m)")
        distances.append(distance)
    init = raw.get("init_heading", 0) if isinstance(raw, dict) else 0
    if isinstance(init, bool) or not isinstance(init, (int, float)) or not math.isfinite(init):
        raise VirlDataError(f"{where}.init_heading: expected a number, got {init!r}")
    start_name = start_place.get("name") if isinstance(start_place, dict) else None
    if not isinstance(start_name, str) or not start_name.strip():
        start_name = f"{start[0]:.6f},{start[1]:.6f}"
    return _RawRoute(
        index=index,
        start_name=to_prompt_text(start_name.strip(), 60),
        dest_name=to_prompt_text(dest_name.strip(), 60),
        start=start,
        key_points=key_points,
        headings=tuple(headings),
        landmarks=tuple(landmarks),
        distances=tuple(distances),
        init_heading=float(init),
    )


def _build_route(raw: _RawRoute, file: str) -> Route:
    """The rail and instructions of a real route (a pure function of the route)."""
    rng = np.random.default_rng([raw.index, 0x4EA1])
    origin = raw.start
    keys_ll = (raw.start,) + raw.key_points
    keys = tuple(latlng_to_local(lat, lng, origin) for lat, lng in keys_ll)
    n_legs = len(raw.key_points)
    leg_deg = [h for h, _ in raw.headings]
    leg_cmp = [c for _, c in raw.headings]
    if raw.init_heading == 0:
        turn = int(rng.choice([-2, -1, 1, 2]))
        init_cmp = (leg_cmp[0] - turn) % 8
        init_deg = wrap360(leg_deg[0] - 45.0 * turn)
    else:
        init_deg = wrap360(raw.init_heading)
        init_cmp = snap_bearing(init_deg)

    sentences: list[str] = []
    for leg in range(n_legs):
        prev = init_cmp if leg == 0 else leg_cmp[leg - 1]
        sentences.append(turn_sentence(leg == 0, prev, leg_cmp[leg]))
        last = leg == n_legs - 1
        lm = raw.landmarks[leg]
        name, side = (lm if lm else (None, None))
        if last and name is None:
            name = raw.dest_name
        if name is not None and side == "":
            # Landmark text that is not "X is on your <side>": quote it as given.
            target = "your destination" if last else "the next intersection"
            sentences.append(f"Move forward until you reach {target}, where {name}.")
        else:
            sentences.append(move_sentence(name, side or None, last, raw.distances[leg]))

    def observed(k: int) -> Observed:
        # Key point k (0 = start): the landmark of the leg that ends there.
        lm = raw.landmarks[k - 1] if k >= 1 else None
        landmarks = (lm,) if lm else ()
        at_intersection = 1 <= k < len(keys) - 1
        return Observed(landmarks=landmarks, at_intersection=at_intersection, ways=0)

    def action_at(k: int, facing: int) -> tuple[str, int | None]:
        target = leg_cmp[k]
        return (FORWARD, None) if compass_steps(target, facing) == 0 else (TURN, target)

    rail: list[RailPoint] = []
    panos_pos: list[tuple[float, float]] = []
    act, tgt = action_at(0, init_cmp)
    rail.append(RailPoint(keys[0], init_deg, init_cmp, act, tgt, 0, 0, observed(0)))
    panos_pos.append(keys_ll[0])
    cfg = REAL_RAIL
    for leg in range(n_legs):
        a, b = keys[leg], keys[leg + 1]
        a_ll, b_ll = keys_ll[leg], keys_ll[leg + 1]
        heading, compass = leg_deg[leg], leg_cmp[leg]
        n = cfg.interpolation_points
        for j in range(1, n + 1):
            drop = rng.random() < cfg.drop_probability
            t = j / (n + 1)
            p = (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
            if drop or math.dist(p, a) < 8.0 or math.dist(p, b) < 8.0:
                continue
            rail.append(RailPoint(p, heading, compass, FORWARD, None, None, 2 * leg + 1,
                                  Observed((), False, 0)))
            panos_pos.append((a_ll[0] + t * (b_ll[0] - a_ll[0]), a_ll[1] + t * (b_ll[1] - a_ll[1])))
        if leg < n_legs - 1:
            act, tgt = action_at(leg + 1, compass)
            rail.append(RailPoint(b, heading, compass, act, tgt, leg + 1, 2 * (leg + 1), observed(leg + 1)))
        else:
            rail.append(RailPoint(b, heading, compass, STOP, None, leg + 1, 2 * leg + 1, observed(leg + 1)))
        panos_pos.append(b_ll)
    if len(rail) > MAX_RAIL_POINTS:
        raise VirlDataError(f"{file}: route {raw.index} has {len(rail)} rail points; at most {MAX_RAIL_POINTS}")
    return Route(
        route_id=f"{file}#{raw.index}",
        city_seed=None,
        start_name=raw.start_name,
        destination_name=raw.dest_name,
        key_points=keys,
        leg_headings=tuple(leg_deg),
        leg_compass=tuple(leg_cmp),
        init_heading=init_deg,
        init_compass=init_cmp,
        landmarks=tuple(lm[0] if lm else None for lm in raw.landmarks[:-1]) + (raw.dest_name,),
        instructions=tuple(sentences),
        rail=tuple(rail),
        geo=tuple(panos_pos),
    )


# ---------------------------------------------------------------------------
# panoramas
# ---------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _view_rays(size: int, fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel: longitude offset from the view heading and latitude
    (positive below the horizon), in degrees."""
    f = (size / 2.0) / math.tan(math.radians(fov_deg / 2))
    c = (np.arange(size) + 0.5 - size / 2.0) / f
    x, y = np.meshgrid(c, c)
    lon = np.degrees(np.arctan2(x, 1.0))
    lat = np.degrees(np.arctan2(y, np.sqrt(x * x + 1.0)))
    return lon, lat


def perspective_view(pano: np.ndarray, rotation: float, heading: float, size: int,
                     fov_deg: float = 90.0) -> np.ndarray:
    """Cut a perspective view from an equirectangular panorama.

    The panorama follows the V-IRL convention: the compass bearing ``c``
    lies at longitude ``c - 180 + rotation`` degrees, longitude 0 being the
    image's centre column and longitude increasing to the right; latitude
    runs from +90 (top row) to -90 (bottom row). Sampling is bilinear and
    wraps around the panorama's seam.

    Args:
        pano: ``(H, W, 3)`` uint8 panorama.
        rotation: The panorama's north offset (``rotation`` in its metadata).
        heading: Compass bearing of the view's centre.
        size: Output width and height.
        fov_deg: Horizontal (and vertical) field of view.
    """
    h, w = pano.shape[:2]
    lon_off, lat = _view_rays(size, fov_deg)
    lon = (lon_off + (heading - 180.0 + rotation) + 180.0) % 360.0 - 180.0
    px = (lon / 360.0 + 0.5) * w - 0.5
    py = np.clip((lat / 180.0 + 0.5) * h - 0.5, 0, h - 1)
    x0 = np.floor(px).astype(np.int64)
    y0 = np.floor(py).astype(np.int64)
    fx = (px - x0)[..., None]
    fy = (py - y0)[..., None]
    x0 %= w
    x1 = (x0 + 1) % w
    y1 = np.minimum(y0 + 1, h - 1)
    src = pano.astype(np.float32)
    top = src[y0, x0] * (1 - fx) + src[y0, x1] * fx
    bot = src[y1, x0] * (1 - fx) + src[y1, x1] * fx
    return np.clip(top * (1 - fy) + bot * fy + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------


class VirlDataset:
    """Real V-IRL routes from a folder (see the module docstring for the layout)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        info_path = self.root / "route_infos.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{info_path} not found: a V-IRL data folder needs route_infos.json")
        try:
            data = json.loads(info_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise VirlDataError(f"{info_path}: not valid JSON ({err})") from None
        if not isinstance(data, list) or not data or not isinstance(data[0], list):
            raise VirlDataError(f"{info_path}: expected a JSON list [routes, count]")
        routes = data[0]
        if len(data) > 1 and (not isinstance(data[1], int) or data[1] != len(routes)):
            raise VirlDataError(f"{info_path}: count {data[1]!r} does not match {len(routes)} routes")
        if not routes:
            raise VirlDataError(f"{info_path}: holds no routes")
        self._raw = [_parse_route(r, k, info_path.name) for k, r in enumerate(routes)]
        self._routes = [_build_route(r, info_path.name) for r in self._raw]
        self._file = info_path.name
        self._mapping: tuple[np.ndarray, list[str]] | None = None
        self._panos: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()
        self._candidates: dict[int, tuple[tuple[ForwardCandidate | None, ...], ...]] = {}

    def __len__(self) -> int:
        return len(self._routes)

    def __getstate__(self) -> dict[str, Any]:
        # Decoded panoramas are a cache (megabytes each): re-read after unpickling.
        state = self.__dict__.copy()
        state["_panos"] = OrderedDict()
        return state

    def excluded(self, action_space: str, rail_rules: str = "gengym") -> dict[int, str]:
        """Routes left out of ``action_space``'s splits, with the reason.

        Only gengym's rules leave routes out: the reference rules have a
        relative word for every turn.
        """
        if action_space == "absolute" or rail_rules == "reference":
            return {}
        return {
            k: "a turn of 135 or 180 degrees has no relative action"
            for k, r in enumerate(self._routes)
            if not r.relative_compatible()
        }

    def split_indices(self, split: str, action_space: str = "absolute", rail_rules: str = "gengym") -> list[int]:
        """Route indices of ``split`` (``"train"``, ``"test"`` or ``"all"``)."""
        excluded = self.excluded(action_space, rail_rules)
        out = []
        for k, raw in enumerate(self._raw):
            if k in excluded:
                continue
            if split == "all" or pair_split(0, raw.start_name, raw.dest_name) == split:
                out.append(k)
        return out

    def route(self, split: str, index: int, action_space: str = "absolute", rail_rules: str = "gengym",
              rng: np.random.Generator | None = None) -> Route:
        """Route number ``index`` of ``split``.

        Under the ``"reference"`` rules the route is laid out for one episode
        with ``rng`` (the starting heading where the file gives none, and
        which forward points are dropped); under ``"gengym"`` it is fixed.
        """
        indices = self.split_indices(split, action_space, rail_rules)
        if not 0 <= index < len(indices):
            raise ValueError(f"route {index} is out of range: split {split!r} has {len(indices)} routes")
        k = indices[index]
        if rail_rules == "gengym":
            return self._routes[k]
        if rng is None:
            raise ValueError("the reference rules draw each episode's rail: pass rng")
        init = self._raw[k].init_heading or float(rng.integers(360))
        keep = rng.random((len(self._raw[k].key_points), REAL_RAIL.interpolation_points)) >= REAL_RAIL.drop_probability
        return self.reference_layout(k, init, keep)

    def reference_layout(self, k: int, init_heading: float, keep: np.ndarray) -> Route:
        """Route ``k`` (an index into the file) laid out by the reference rules.

        Args:
            k: The route's position in ``route_infos.json``.
            init_heading: Bearing faced at the start.
            keep: ``(legs, 5)`` booleans: which forward-point candidates
                survive the random drop (those too close to a key point
                never do).
        """
        return reference_route(self._routes[k], init_heading=init_heading, start_observed=Observed((), False, 0),
                               candidates=self.reference_candidates(k), keep=keep)

    def reference_candidates(self, k: int) -> tuple[tuple[ForwardCandidate | None, ...], ...]:
        """Forward-point candidates of route ``k`` under the reference rules (cached).

        At :func:`~gym_virl.routes.reference_fractions` of each leg,
        interpolated in latitude and longitude; with a pano mapping, every
        point is first moved to its nearest panorama within
        :data:`PANO_RADIUS_M` (``None`` for a forward point without one).
        A candidate within 8 m of either (moved) end of its leg is ``None``.
        """
        cached = self._candidates.get(k)
        if cached is not None:
            return cached
        raw = self._raw[k]
        relocate = self._relocator()
        keys = (raw.start,) + raw.key_points
        moved = [relocate(p) or p for p in keys]
        out = []
        for leg in range(len(raw.key_points)):
            a, b = keys[leg], keys[leg + 1]
            row: list[ForwardCandidate | None] = []
            for t in reference_fractions(REAL_RAIL.interpolation_points):
                geo = relocate((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])))
                if (geo is None or ellipsoid_distance_m(moved[leg], b) <= 5.0
                        or min(ellipsoid_distance_m(geo, moved[leg]), ellipsoid_distance_m(geo, moved[leg + 1]))
                        <= REFERENCE_CLEARANCE_M):
                    row.append(None)
                    continue
                row.append(ForwardCandidate(latlng_to_local(*geo, raw.start), Observed((), False, 0), geo))
            out.append(tuple(row))
        self._candidates[k] = result = tuple(out)
        return result

    def _relocator(self) -> Callable[[tuple[float, float]], tuple[float, float] | None]:
        """Moves a point to its nearest panorama (``None`` if none is near); identity without a mapping."""
        if not (self.root / "gps_pano_mapping.pkl").is_file():
            return lambda p: p

        def relocate(p: tuple[float, float]) -> tuple[float, float] | None:
            k, dist = self._nearest_pano(*p)
            if dist >= PANO_RADIUS_M:  # the reference relocates within strictly less
                return None
            coords = self._pano_index()[0]
            return (float(coords[k, 0]), float(coords[k, 1]))

        return relocate

    # -- imagery --------------------------------------------------------------

    def _pano_index(self) -> tuple[np.ndarray, list[str]]:
        if self._mapping is None:
            path = self.root / "gps_pano_mapping.pkl"
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: image mode needs the pano mapping")
            mapping = load_pano_mapping(path)
            if not mapping:
                raise VirlDataError(f"{path}: the mapping is empty")
            keys = list(mapping)
            self._mapping = (np.array(keys, dtype=float), [mapping[k] for k in keys])
        return self._mapping

    def pano_for(self, lat: float, lng: float) -> str:
        """The panorama id nearest to ``(lat, lng)`` within :data:`PANO_RADIUS_M`.

        Raises:
            FileNotFoundError: No panorama lies within the radius.
        """
        ids = self._pano_index()[1]
        k, dist = self._nearest_pano(lat, lng)
        if dist > PANO_RADIUS_M:
            raise FileNotFoundError(
                f"no panorama within {PANO_RADIUS_M:g} m of ({lat:.6f}, {lng:.6f}) in "
                f"{self.root / 'gps_pano_mapping.pkl'} (nearest: {ids[k]} at {dist:.0f} m)"
            )
        return ids[k]

    def _nearest_pano(self, lat: float, lng: float) -> tuple[int, float]:
        """Index of the mapped point nearest to ``(lat, lng)`` and its distance in metres."""
        coords = self._pano_index()[0]
        lat0 = math.radians(lat)
        dy = np.radians(coords[:, 0] - lat) * 6_371_008.8
        dx = np.radians(coords[:, 1] - lng) * 6_371_008.8 * math.cos(lat0)
        k = int(np.argmin(dx * dx + dy * dy))
        return k, haversine_m((lat, lng), (float(coords[k, 0]), float(coords[k, 1])))

    def _load_pano(self, pano_id: str) -> tuple[np.ndarray, float]:
        cached = self._panos.get(pano_id)
        if cached is not None:
            self._panos.move_to_end(pano_id)
            return cached
        folder = self.root / "street_views"
        image_path = folder / f"{pano_id}.jpg"
        meta_path = folder / f"{pano_id}.metadata.json"
        if not image_path.is_file():
            raise FileNotFoundError(f"missing panorama {pano_id}: {image_path} not found")
        if not meta_path.is_file():
            raise FileNotFoundError(f"missing panorama metadata {pano_id}: {meta_path} not found")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise VirlDataError(f"{meta_path}: not valid JSON ({err})") from None
        rotation = _field(meta, "rotation", str(meta_path))
        if isinstance(rotation, bool) or not isinstance(rotation, (int, float)) or not math.isfinite(rotation):
            raise VirlDataError(f"{meta_path}: field 'rotation' must be a number, got {rotation!r}")
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(image_path) as img:
                if img.size[0] * img.size[1] > MAX_PANO_PIXELS:
                    raise VirlDataError(f"{image_path}: {img.size[0]}x{img.size[1]} is too large")
                pano = np.asarray(img.convert("RGB"))
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
            raise VirlDataError(f"{image_path}: not a readable image ({err})") from None
        self._panos[pano_id] = (pano, float(rotation))
        while len(self._panos) > 6:
            self._panos.popitem(last=False)
        return pano, float(rotation)

    def check_imagery(self, route: Route) -> list[str]:
        """Panorama ids of every rail point; raises if any is missing."""
        ids = []
        for lat, lng in route.geo:
            pano_id = self.pano_for(lat, lng)
            folder = self.root / "street_views"
            for suffix in (".jpg", ".metadata.json"):
                if not (folder / f"{pano_id}{suffix}").is_file():
                    raise FileNotFoundError(f"missing panorama {pano_id}: {folder / (pano_id + suffix)} not found")
            ids.append(pano_id)
        return ids

    def render_point(self, route: Route, rail_index: int, size: int) -> np.ndarray:
        """The 2x2 front / right / back / left views at a rail point, from its panorama."""
        from gym_virl.render.streetview import VIEW_OFFSETS, views_to_grid

        lat, lng = route.geo[rail_index]
        pano, rotation = self._load_pano(self.pano_for(lat, lng))
        heading = route.rail[rail_index].heading
        views = [perspective_view(pano, rotation, (heading + off) % 360.0, size) for off in VIEW_OFFSETS]
        return views_to_grid(views)


@lru_cache(maxsize=4)
def _load_cached(root: str, mtime_ns: int) -> VirlDataset:
    del mtime_ns  # part of the cache key: a changed file is read again
    return VirlDataset(root)


def load_dataset(root: str | Path) -> VirlDataset:
    """A :class:`VirlDataset`, cached per folder (re-read when route_infos.json changes)."""
    path = Path(root)
    info = path / "route_infos.json"
    mtime = info.stat().st_mtime_ns if info.is_file() else 0
    return _load_cached(str(path.resolve()), mtime)
