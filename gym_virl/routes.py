"""Routes, rails, gold actions and instructions.

A *route* runs from a start place to a destination place through a few
intersections where it turns (the *key points*). Following the paper's
system, the agent does not move freely: it rides a fixed *rail* of positions
-- the key points plus a few interpolated points along each leg -- and at
each rail point exactly one action is right (the *gold action*):

* at the start and at every turning intersection: ``turn_direction(x)``
  towards the next leg (the agent then moves on along the new leg);
* at interpolated points: ``forward()``;
* at the destination: ``stop()``.

Everything here is a pure function of ``(city seed, route seed)``: the
generator builds its own ``np.random.default_rng`` from the route seed and
reads only the city. What the agent can observe at each rail point (route
landmarks in view and on which side, whether it stands at an intersection)
is computed once, from the city's geometry, and stored with the rail, so
that the env's ``step`` only assembles text.

Turns are restricted to 45 and 90 degrees (as announced after snapping to
the eight compass directions), so every gold action has an equivalent in
the relative action space (``left``, ``right``, ``slightly left``,
``slightly right``): absolute and relative gold actions always agree.

That is gengym's way of laying out a rail (``rail_rules="gengym"``).
:func:`reference_route` lays out the same route as the paper's code does
(``rail_rules="reference"``, the default for real data): a starting heading
and the forward points drawn per episode, relative words from the turn's
angle. ``docs/reference-differences.md`` compares the two.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from gym_virl.city.generate import City, Place, city_for_seed
from gym_virl.geometry import (
    COMPASS,
    angle_diff,
    angle_turn_word,
    bearing_between,
    compass_steps,
    distance,
    relative_side,
    relative_turn_word,
    snap_bearing,
    wrap360,
)

#: Action kinds of the navigation task.
FORWARD, TURN, STOP = "forward", "turn", "stop"


@dataclass(frozen=True)
class RouteConfig:
    """How routes are drawn (lengths in metres).

    The defaults are V-IRL's: start and destination 40-150 m apart, one or
    two turns. :data:`LONG_ROUTES` is the longer option, up to 8 turns like
    the paper's New York training routes.

    Attributes:
        min_turns: Fewest turning intersections.
        max_turns: Most turning intersections.
        min_distance: Shortest straight-line distance start -> destination.
        max_distance: Longest straight-line distance start -> destination.
        max_path_length: Longest walk along the route.
        min_leg: Shortest walk between consecutive key points.
        interpolation_points: Forward points tried along each leg before
            dropping: at ``j / (n + 1)`` under gengym's rules, at ``i / n``
            under the reference's (which uses 5; the last is the leg's end,
            so at most ``n - 1`` remain).
        drop_probability: Chance that each interpolated point is dropped
            (the reference uses 0.5).
        node_clearance: Interpolated points, start and destination keep at
            least this far from any intersection, so "not at an
            intersection" is true wherever the rail says so.
        landmark_range: A turning intersection's landmark is the nearest
            visible storefront within this distance of the intersection.
        view_radius: Route landmarks within this distance and in sight are
            reported in the observation.
        max_attempts: Draws tried before giving up on a route seed.
    """

    min_turns: int = 1
    max_turns: int = 2
    min_distance: float = 40.0
    max_distance: float = 150.0
    max_path_length: float = 320.0
    min_leg: float = 25.0
    interpolation_points: int = 5
    drop_probability: float = 0.5
    node_clearance: float = 12.0
    landmark_range: float = 20.0
    view_radius: float = 22.0
    max_attempts: int = 400

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first impossible value."""
        if not 0 <= self.min_turns <= self.max_turns <= 8:
            raise ValueError("need 0 <= min_turns <= max_turns <= 8")
        if not 0 <= self.min_distance <= self.max_distance:
            raise ValueError("need 0 <= min_distance <= max_distance")
        if self.min_leg < 2 * 8.0:
            raise ValueError("min_leg must be at least 16 m")
        if not 0 <= self.interpolation_points <= 20:
            raise ValueError("interpolation_points must be in [0, 20]")
        if not 0.0 <= self.drop_probability <= 1.0:
            raise ValueError("drop_probability must be in [0, 1]")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be positive")


#: V-IRL's route statistics: 40-150 m, 1-2 turns.
SHORT_ROUTES = RouteConfig()
#: Longer routes with 3 to 8 turns, like the paper's New York routes.
LONG_ROUTES = RouteConfig(min_turns=3, max_turns=8, max_distance=2000.0, max_path_length=1600.0)
#: Named presets for the ``route_length`` env argument.
ROUTE_PRESETS: dict[str, RouteConfig] = {"short": SHORT_ROUTES, "long": LONG_ROUTES}


@dataclass(frozen=True)
class Observed:
    """What can be observed at one rail point.

    Attributes:
        landmarks: ``(name, side)`` of each route landmark in view, nearest
            first; ``side`` is one of :data:`~gym_virl.geometry.RELATIVE_SIDES`.
        at_intersection: Whether the point is at an intersection.
        ways: Number of streets meeting there (0 when unknown or not at one).
    """

    landmarks: tuple[tuple[str, str], ...]
    at_intersection: bool
    ways: int = 0


@dataclass(frozen=True)
class RailPoint:
    """One position on the rail with its gold action.

    Attributes:
        position: East-north metres.
        heading: Bearing the agent faces (the camera heading), degrees.
        compass: Compass index the agent is facing, as announced.
        action: ``"forward"``, ``"turn"`` or ``"stop"``.
        target: For a turn, the compass index to face; else ``None``.
        key_point: Index of the key point this rail point is, else ``None``.
        instruction: Index of the instruction sentence being carried out.
        observed: What can be seen here.
        relative_action: For a turn whose relative gold action the route
            fixes (the reference rules: the word follows the turn's angle),
            that action; ``None`` derives it from the compass steps.
    """

    position: tuple[float, float]
    heading: float
    compass: int
    action: str
    target: int | None
    key_point: int | None
    instruction: int
    observed: Observed
    relative_action: str | None = None

    def gold_action(self, action_space: str = "absolute") -> str:
        """The gold action as text in ``action_space`` (``"absolute"`` or ``"relative"``).

        Raises:
            ValueError: The turn cannot be said in the relative action space
                (only possible for real route data under gengym's rules; see
                :mod:`gym_virl.realdata`).
        """
        if self.action == FORWARD:
            return "forward()"
        if self.action == STOP:
            return "stop()"
        if action_space == "absolute":
            return f"turn_direction({COMPASS[self.target]})"
        if self.relative_action is not None:
            return self.relative_action
        word = relative_turn_word(self.target, self.compass)
        if word is None:
            raise ValueError(
                f"a turn from {COMPASS[self.compass]} to {COMPASS[self.target]} cannot be "
                "expressed with left/right/slightly left/slightly right"
            )
        return f"turn_direction({word})"


@dataclass(frozen=True)
class Route:
    """A route with its rail and instructions.

    Attributes:
        route_id: Identifies the route, e.g. ``"city0/train/17"``.
        city_seed: Seed of the synthetic city, ``None`` for real data.
        start_name: Name of the start place.
        destination_name: Name of the destination place.
        key_points: Positions of start, turning intersections and destination.
        leg_headings: True bearing of each leg (one fewer than key points).
        leg_compass: Announced compass index of each leg.
        init_heading: Bearing the agent faces at the start.
        init_compass: Compass index announced for ``init_heading``.
        landmarks: Landmark name at each key point after the start (the
            destination's name last), ``None`` where none is near.
        instructions: Instruction sentences, unnumbered; two per leg (turn,
            then move forward).
        rail: The rail points.
        geo: For real data, the ``(lat, lng)`` of each rail point (to find
            its panorama); empty for generated routes.
    """

    route_id: str
    city_seed: int | None
    start_name: str
    destination_name: str
    key_points: tuple[tuple[float, float], ...]
    leg_headings: tuple[float, ...]
    leg_compass: tuple[int, ...]
    init_heading: float
    init_compass: int
    landmarks: tuple[str | None, ...]
    instructions: tuple[str, ...]
    rail: tuple[RailPoint, ...]
    geo: tuple[tuple[float, float], ...] = field(default=())

    @property
    def num_turns(self) -> int:
        """Turning intersections between start and destination."""
        return len(self.key_points) - 2

    @property
    def path_length(self) -> float:
        """Walking distance along the route in metres."""
        return sum(distance(a, b) for a, b in zip(self.key_points, self.key_points[1:], strict=False))

    def numbered_instructions(self) -> str:
        """The instructions as the prompt shows them: one numbered sentence a line."""
        return "\n".join(f"{i + 1}. {s}" for i, s in enumerate(self.instructions))

    def relative_compatible(self) -> bool:
        """Whether every turn can be said in the relative action space."""
        try:
            for p in self.rail:
                p.gold_action("relative")
        except ValueError:
            return False
        return True


# ---------------------------------------------------------------------------
# instructions
# ---------------------------------------------------------------------------


def turn_sentence(first: bool, from_compass: int, to_compass: int) -> str:
    """The turn sentence of a leg: relative word and compass direction.

    Example:
        >>> turn_sentence(True, 6, 0)
        'First, turn right to face north.'
        >>> turn_sentence(False, 0, 0)
        'Continue straight, facing north.'
    """
    steps = compass_steps(to_compass, from_compass)
    if steps == 0:
        return worded_turn_sentence(first, None, to_compass)
    word = relative_turn_word(to_compass, from_compass)
    if word is None:
        word = "around" if steps == 4 else ("sharply right" if steps > 0 else "sharply left")
    return worded_turn_sentence(first, word, to_compass)


def worded_turn_sentence(first: bool, word: str | None, to_compass: int) -> str:
    """The turn sentence of a leg with a given relative word (``None``: no turn).

    Example:
        >>> worded_turn_sentence(False, "slightly right", 1)
        'Turn slightly right to face northeast.'
    """
    if word is None:
        return f"Continue straight, facing {COMPASS[to_compass]}."
    lead = "First, turn" if first else "Turn"
    return f"{lead} {word} to face {COMPASS[to_compass]}."


#: How :func:`move_sentence` gives a leg's length, right after "Move forward".
_DISTANCE_TEXT = " about {} meters"
_DISTANCE = re.compile(re.escape(_DISTANCE_TEXT).replace(r"\{\}", r"\d+"))


def move_sentence(landmark: str | None, side: str | None, to_destination: bool,
                  meters: float | None) -> str:
    """The move-forward sentence of a leg, naming the landmark at its end.

    Example:
        >>> move_sentence("Harbor Bank", "left front", False, 62.4)
        'Move forward about 60 meters until you reach the intersection where Harbor Bank is on your left front.'
        >>> move_sentence("Teal Cafe", "right", True, None)
        'Move forward until you reach your destination, Teal Cafe, on your right.'
    """
    dist = _DISTANCE_TEXT.format(int(round(meters / 10.0) * 10)) if meters else ""
    if to_destination:
        where = f", {landmark}," if landmark else ""
        on = f" on your {side}" if side else ""
        return f"Move forward{dist} until you reach your destination{where}{on}.".replace(",.", ".")
    if landmark:
        return (f"Move forward{dist} until you reach the intersection where "
                f"{landmark} is on your {side}.")
    return f"Move forward{dist} until you reach the next intersection."


# ---------------------------------------------------------------------------
# route generation
# ---------------------------------------------------------------------------


def _route_rng(city_seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(city_seed), 0 if split == "train" else 1, int(index), 0x40A7E])


def pair_split(city_seed: int, place_a: str, place_b: str, test_fraction: float = 0.2) -> str:
    """Which split a route between two places belongs to: ``"train"`` or ``"test"``.

    The split depends only on the unordered pair of places, so a route and
    its reverse always fall on the same side, and the train and test splits
    never share a route. The hash is a fixed function (BLAKE2b), stable
    across machines and Python versions.

    Example:
        >>> pair_split(0, "A", "B") == pair_split(0, "B", "A")
        True
    """
    lo, hi = sorted((place_a, place_b))
    digest = hashlib.blake2b(f"{city_seed}\x00{lo}\x00{hi}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    return "test" if u < test_fraction else "train"


@dataclass
class _Walk:
    """A partial route while it is being drawn."""

    positions: list[tuple[float, float]]
    headings: list[float]
    compass: list[int]
    turn_nodes: list[int]
    visited: set[int]


def _run_ahead(city: City, node: int, heading: float, max_len: float) -> list[tuple[int, float, int]]:
    """Nodes reached by going straight on from ``node`` along ``heading``.

    Returns ``(node, distance from the given node, street taken to reach it)``
    for each node passed, until the street stops going straight or
    ``max_len`` is exceeded. The given node itself is not included.
    """
    out = []
    total = 0.0
    current = node
    while total < max_len:
        nxt = None
        for street, other in city.neighbours(current):
            if abs(angle_diff(city.street_bearing(street, current), heading)) < 1.0:
                nxt = (street, other)
                break
        if nxt is None:
            break
        total += city.street_length(nxt[0])
        current = nxt[1]
        out.append((current, total, nxt[0]))
    return out


def _turn_options(city: City, node: int, heading: float, compass: int) -> list[tuple[float, int]]:
    """Streets at ``node`` one may turn into: ``(bearing, announced compass)``.

    Only turns of 45 or 90 degrees as announced, in the same direction as
    and close to the true turn, qualify, so the words match the street.
    """
    options = []
    for street, _ in city.neighbours(node):
        b = city.street_bearing(street, node)
        true_turn = angle_diff(b, heading)
        if not 30.0 <= abs(true_turn) <= 120.0:
            continue
        c = snap_bearing(b, previous=(heading, compass))
        steps = compass_steps(c, compass)
        if steps not in (-2, -1, 1, 2) or (steps > 0) != (true_turn > 0):
            continue
        if abs(steps * 45.0 - true_turn) > 35.0:
            continue
        options.append((b, c))
    return options


def _on_street_point(city: City, place: Place) -> tuple[float, float]:
    s = city.streets[place.street]
    pu = city.nodes[s.u]
    d = (city.nodes[s.v] - pu) / city.street_length(s.id)
    p = pu + d * place.along
    return (float(p[0]), float(p[1]))


def _near_intersection(city: City, point: tuple[float, float], clearance: float) -> bool:
    xy = city.intersection_xy
    if len(xy) == 0:
        return False
    d = np.hypot(xy[:, 0] - point[0], xy[:, 1] - point[1])
    return bool(d.min() < clearance)


@lru_cache(maxsize=8)
def _places_by_street_cached(city: City) -> dict[int, tuple[Place, ...]]:
    """Places grouped by the street their storefront faces."""
    groups: dict[int, list[Place]] = {}
    for p in city.places:
        groups.setdefault(p.street, []).append(p)
    return {k: tuple(v) for k, v in groups.items()}


def _landmark_for(city: City, node: int, used: set[str], config: RouteConfig) -> Place | None:
    """The nearest storefront in sight from an intersection, within range."""
    eye = city.node_xy(node)
    best = None
    # Only places near the eye can qualify; numpy finds them (with a margin, the
    # test below is the exact one), and they are tried in the city's order.
    xy = city.place_positions
    near = np.flatnonzero(np.hypot(xy[:, 0] - eye[0], xy[:, 1] - eye[1]) <= config.landmark_range + 1e-6)
    for i in near.tolist():
        place = city.places[i]
        d = distance(eye, place.position)
        if d > config.landmark_range or place.name in used:
            continue
        if best is not None and d >= best[0]:
            continue
        if not city.place_visible(place, eye):
            continue
        # The sign must not be seen too edge-on to be read.
        to_eye = bearing_between(place.position, eye)
        if abs(angle_diff(to_eye, place.facing)) > 68.0:
            continue
        best = (d, place)
    return None if best is None else best[1]


def _observe(city: City, point: tuple[float, float], heading: float, landmarks: list[Place],
             config: RouteConfig, at_intersection: bool, ways: int) -> Observed:
    seen = []
    for place in landmarks:
        d = distance(point, place.position)
        if d <= config.view_radius and city.place_visible(place, point):
            seen.append((d, place.name, relative_side(heading, bearing_between(point, place.position))))
    seen.sort()
    return Observed(
        landmarks=tuple((name, side) for _, name, side in seen),
        at_intersection=at_intersection,
        ways=ways if at_intersection else 0,
    )


def _draw_walk(city: City, rng: np.random.Generator, config: RouteConfig, split: str,
               test_fraction: float) -> tuple[_Walk, Place, Place] | None:
    """One attempt at drawing start, turns and destination; ``None`` on failure."""
    start = city.places[int(rng.integers(len(city.places)))]
    s = city.streets[start.street]
    start_pt = _on_street_point(city, start)
    if _near_intersection(city, start_pt, config.node_clearance):
        return None
    towards_v = bool(rng.random() < 0.5)
    first_node = s.v if towards_v else s.u
    heading = bearing_between(start_pt, city.node_xy(first_node))
    to_first = distance(start_pt, city.node_xy(first_node))
    compass = snap_bearing(heading)
    walk = _Walk(positions=[start_pt], headings=[heading], compass=[compass], turn_nodes=[],
                 visited=set())
    n_turns = int(rng.integers(config.min_turns, config.max_turns + 1))
    pos = start_pt
    walked = 0.0

    def run_from_here() -> tuple[list[tuple[int, float]], set[int], float]:
        """Straight run ahead of ``pos``: (node, distance) pairs, streets, reach.

        Never passing a node twice, the run ends before the first visited
        node; ``reach`` is how far ahead one may walk.
        """
        if not walk.turn_nodes:
            ahead = _run_ahead(city, first_node, heading, config.max_path_length)
            run = [(first_node, to_first, start.street)] + [
                (n, d + to_first, st) for n, d, st in ahead]
        else:
            run = _run_ahead(city, walk.turn_nodes[-1], heading, config.max_path_length)
        kept: list[tuple[int, float]] = []
        streets: set[int] = set()
        for n, d, st in run:
            streets.add(st)
            if n in walk.visited:
                return kept, streets, d
            kept.append((n, d))
        return kept, streets, (kept[-1][1] if kept else 0.0)

    for _ in range(n_turns):
        run, _, _ = run_from_here()
        choices = []
        for node, d in run:
            if d < config.min_leg or not city.is_intersection(node):
                continue
            options = _turn_options(city, node, heading, compass)
            if options:
                choices.append((node, d, options))
        if not choices:
            return None
        # Prefer nearer intersections: V-IRL routes turn within a block or two.
        weights = np.array([1.0 / (k + 1) for k in range(len(choices))])
        node, d, options = choices[int(rng.choice(len(choices), p=weights / weights.sum()))]
        walk.visited.update(n for n, dn in run if dn <= d)
        heading, compass = options[int(rng.integers(len(options)))]
        walked += d
        pos = city.node_xy(node)
        walk.positions.append(pos)
        walk.turn_nodes.append(node)
        walk.headings.append(heading)
        walk.compass.append(compass)

    # Destination: a storefront facing the final straight run.
    _, streets, reach = run_from_here()
    ux, uy = math.sin(math.radians(heading)), math.cos(math.radians(heading))
    by_street = _places_by_street_cached(city)
    candidates = []
    for street in sorted(streets):
        for place in by_street.get(street, ()):
            if place.id == start.id:
                continue
            dest_pt = _on_street_point(city, place)
            ahead = (dest_pt[0] - pos[0]) * ux + (dest_pt[1] - pos[1]) * uy
            if not config.min_leg <= ahead <= reach:
                continue
            if _near_intersection(city, dest_pt, config.node_clearance):
                continue
            total = walked + ahead
            straight = distance(start_pt, dest_pt)
            if total > config.max_path_length or not config.min_distance <= straight <= config.max_distance:
                continue
            if pair_split(city.seed, start.name, place.name, test_fraction) != split:
                continue
            candidates.append(place)
    if not candidates:
        return None
    dest = candidates[int(rng.integers(len(candidates)))]
    walk.positions.append(_on_street_point(city, dest))
    return walk, start, dest


def _build_rail(city: City, walk: _Walk, start: Place, dest: Place, init_turn: int,
                rng: np.random.Generator, config: RouteConfig,
                landmarks: list[Place | None]) -> tuple[tuple[RailPoint, ...], tuple[str, ...], float, int]:
    key = walk.positions
    n_legs = len(key) - 1
    init_compass = (walk.compass[0] - init_turn) % 8
    init_heading = walk.headings[0] - 45.0 * init_turn
    route_landmarks = [p for p in landmarks if p is not None] + [dest]

    # Instructions: two sentences per leg.
    sentences: list[str] = []
    arrival_obs: list[Observed] = []
    for leg in range(n_legs):
        prev_compass = init_compass if leg == 0 else walk.compass[leg - 1]
        sentences.append(turn_sentence(leg == 0, prev_compass, walk.compass[leg]))
        end = key[leg + 1]
        last = leg == n_legs - 1
        node = None if last else walk.turn_nodes[leg]
        obs = _observe(city, end, walk.headings[leg], route_landmarks, config,
                       at_intersection=not last, ways=0 if last else city.degree(node))
        arrival_obs.append(obs)
        target = dest if last else landmarks[leg]
        side = None
        if target is not None:
            side = next((sd for nm, sd in obs.landmarks if nm == target.name), None)
            if side is None:  # not in view from the end point: describe it from the geometry
                side = relative_side(walk.headings[leg], bearing_between(end, target.position))
        sentences.append(move_sentence(target.name if target else None, side, last,
                                       distance(key[leg], end)))

    rail: list[RailPoint] = []
    start_obs = _observe(city, key[0], init_heading, route_landmarks, config, False, 0)
    rail.append(RailPoint(key[0], init_heading % 360.0, init_compass, TURN, walk.compass[0], 0, 0,
                          start_obs))
    for leg in range(n_legs):
        a, b = key[leg], key[leg + 1]
        heading, compass = walk.headings[leg] % 360.0, walk.compass[leg]
        n = config.interpolation_points
        for j in range(1, n + 1):
            drop = rng.random() < config.drop_probability
            t = j / (n + 1)
            p = (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
            if drop or distance(p, a) < 8.0 or distance(p, b) < 8.0:
                continue
            if _near_intersection(city, p, config.node_clearance):
                continue
            obs = _observe(city, p, heading, route_landmarks, config, False, 0)
            rail.append(RailPoint(p, heading, compass, FORWARD, None, None, 2 * leg + 1, obs))
        if leg < n_legs - 1:
            rail.append(RailPoint(b, heading, compass, TURN, walk.compass[leg + 1], leg + 1,
                                  2 * (leg + 1), arrival_obs[leg]))
        else:
            rail.append(RailPoint(b, heading, compass, STOP, None, leg + 1, 2 * leg + 1,
                                  arrival_obs[leg]))
    return tuple(rail), tuple(sentences), init_heading % 360.0, init_compass


def generate_route(city: City, route_seed: int, *, split: str = "train",
                   config: RouteConfig | None = None, test_fraction: float = 0.2,
                   route_id: str | None = None) -> Route:
    """Draw a route in ``city``: a pure function of ``(city, route_seed, split, config)``.

    Args:
        city: The city (from :func:`~gym_virl.city.city_for_seed`).
        route_seed: Seed of the route's own random generator.
        split: ``"train"`` or ``"test"``: only routes whose place pair
            belongs to the split (see :func:`pair_split`) are drawn.
        config: Route statistics; defaults to :data:`SHORT_ROUTES`.
        test_fraction: Share of place pairs held out for the test split.
        route_id: Name to record; defaults to ``"city{seed}/{split}/seed{route_seed}"``.

    Raises:
        RuntimeError: No route was found in ``config.max_attempts`` draws.
    """
    config = config or SHORT_ROUTES
    config.validate()
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rng = np.random.default_rng([int(route_seed), 0x7A11])
    for _ in range(config.max_attempts):
        drawn = _draw_walk(city, rng, config, split, test_fraction)
        if drawn is None:
            continue
        walk, start, dest = drawn
        used = {start.name, dest.name}
        landmarks: list[Place | None] = []
        for node in walk.turn_nodes:
            lm = _landmark_for(city, node, used, config)
            if lm is not None:
                used.add(lm.name)
            landmarks.append(lm)
        init_turn = int(rng.choice([-2, -1, 1, 2]))
        rail, sentences, init_heading, init_compass = _build_rail(
            city, walk, start, dest, init_turn, rng, config, landmarks)
        return Route(
            route_id=route_id or f"city{city.seed}/{split}/seed{route_seed}",
            city_seed=city.seed,
            start_name=start.name,
            destination_name=dest.name,
            key_points=tuple(walk.positions),
            leg_headings=tuple(h % 360.0 for h in walk.headings),
            leg_compass=tuple(walk.compass),
            init_heading=init_heading,
            init_compass=init_compass,
            landmarks=tuple(lm.name if lm else None for lm in landmarks) + (dest.name,),
            instructions=sentences,
            rail=rail,
        )
    raise RuntimeError(
        f"no route found in city {city.seed} for seed {route_seed} after {config.max_attempts} draws; "
        "loosen the route config"
    )


# ---------------------------------------------------------------------------
# the reference code's rules
# ---------------------------------------------------------------------------

#: How a route's rail, gold actions and turn words are made (the env's ``rail_rules``):
#: ``"reference"`` as the paper's code does, ``"gengym"`` this package's own way.
RAIL_RULES: tuple[str, ...] = ("reference", "gengym")
#: Under the reference rules, forward points this close to either end of their leg are left out.
REFERENCE_CLEARANCE_M: float = 8.0


@dataclass(frozen=True)
class ForwardCandidate:
    """A place along a leg where the reference rules may put a forward point.

    Attributes:
        position: East-north metres.
        observed: What can be seen there.
        geo: ``(lat, lng)`` for real data (to find its panorama), else ``None``.
    """

    position: tuple[float, float]
    observed: Observed
    geo: tuple[float, float] | None = None


def reference_fractions(n: int) -> tuple[float, ...]:
    """Where along a leg the reference rules try forward points: ``i / n``, ``i = 1..n``.

    The last is the leg's end, always within :data:`REFERENCE_CLEARANCE_M` of
    it, so at most ``n - 1`` forward points survive per leg.

    Example:
        >>> reference_fractions(5)
        (0.2, 0.4, 0.6, 0.8, 1.0)
    """
    return tuple(i / n for i in range(1, n + 1))


def _turn_action(turn_deg: float) -> str:
    word = angle_turn_word(turn_deg)
    return "forward()" if word is None else f"turn_direction({word})"


def reference_route(route: Route, *, init_heading: float, start_observed: Observed,
                    candidates: Sequence[Sequence[ForwardCandidate | None]], keep: np.ndarray) -> Route:
    """``route`` laid out by the reference code's rules for one episode.

    The key points, their observations, the landmarks and the move-forward
    sentences of ``route`` stay; the rest follows the reference:

    * the agent starts at the first key point facing ``init_heading``
      (which ``start_observed`` describes);
    * every key point before the destination has ``turn_direction(x)``
      towards the next leg as its gold action, also where the next leg goes
      straight on; in the relative action space the word follows the turn's
      angle (:func:`~gym_virl.geometry.angle_turn_word`: wrapped at 360
      degrees, and ``forward()`` for a turn of 0 degrees, which the reference
      called "slightly left"); the turn sentences use the same words;
    * the move-forward sentences give no distance, as the reference's do;
    * forward points: ``candidates[leg][i]`` (``None`` where the candidate
      is excluded whatever the draw) wherever ``keep[leg, i]``.

    Args:
        route: The route (any rail; only its key points are used).
        init_heading: Bearing faced at the start.
        start_observed: What can be seen at the start facing ``init_heading``.
        candidates: Per leg, the candidates at :func:`reference_fractions`.
        keep: ``(legs, candidates per leg)`` booleans: the episode's draw.
    """
    n_legs = len(route.key_points) - 1
    if len(candidates) != n_legs or np.shape(keep)[0] != n_legs:
        raise ValueError(f"expected candidates and keep flags for {n_legs} legs")
    by_key = {p.key_point: (p, g) for p, g in zip(route.rail, route.geo or [None] * len(route.rail), strict=True)
              if p.key_point is not None}
    headings = (init_heading,) + route.leg_headings
    init_compass = snap_bearing(init_heading)
    sentences: list[str] = []
    for leg in range(n_legs):
        word = angle_turn_word(headings[leg + 1] - headings[leg])
        sentences.append(worded_turn_sentence(leg == 0, word, route.leg_compass[leg]))
        sentences.append(_DISTANCE.sub("", route.instructions[2 * leg + 1], count=1))
    rail = [RailPoint(route.key_points[0], wrap360(init_heading), init_compass, TURN, route.leg_compass[0], 0, 0,
                      start_observed, _turn_action(headings[1] - headings[0]))]
    geo = [by_key[0][1]]
    for leg in range(n_legs):
        heading, compass = route.leg_headings[leg], route.leg_compass[leg]
        for i, cand in enumerate(candidates[leg]):
            if cand is not None and keep[leg][i]:
                rail.append(RailPoint(cand.position, heading, compass, FORWARD, None, None, 2 * leg + 1,
                                      cand.observed))
                geo.append(cand.geo)
        end, end_geo = by_key[leg + 1]
        if leg < n_legs - 1:
            rail.append(RailPoint(end.position, heading, compass, TURN, route.leg_compass[leg + 1], leg + 1,
                                  2 * (leg + 1), end.observed, _turn_action(headings[leg + 2] - heading)))
        else:
            rail.append(RailPoint(end.position, heading, compass, STOP, None, leg + 1, 2 * leg + 1, end.observed))
        geo.append(end_geo)
    return dataclasses.replace(
        route,
        init_heading=wrap360(init_heading),
        init_compass=init_compass,
        instructions=tuple(sentences),
        rail=tuple(rail),
        geo=tuple(geo) if route.geo else (),
    )


@lru_cache(maxsize=1024)
def reference_candidates(city_seed: int, split: str, index: int, config: RouteConfig = SHORT_ROUTES,
                         test_fraction: float = 0.2) -> tuple[tuple[ForwardCandidate | None, ...], ...]:
    """Forward-point candidates of a generated route under the reference rules (cached).

    At :func:`reference_fractions` of each leg; a candidate within
    :data:`REFERENCE_CLEARANCE_M` of either end of its leg is ``None``, and so
    is one near an intersection the route passes (the rail would wrongly say
    it is not at an intersection there).
    """
    route = route_for(city_seed, split, index, config, test_fraction)
    city = city_for_seed(city_seed)
    landmarks = [city.place_by_name[n] for n in route.landmarks if n]
    out = []
    for leg, (a, b) in enumerate(zip(route.key_points, route.key_points[1:], strict=False)):
        row: list[ForwardCandidate | None] = []
        for t in reference_fractions(config.interpolation_points):
            p = (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
            if (min(distance(p, a), distance(p, b)) <= REFERENCE_CLEARANCE_M
                    or _near_intersection(city, p, config.node_clearance)):
                row.append(None)
                continue
            row.append(ForwardCandidate(p, _observe(city, p, route.leg_headings[leg], landmarks, config, False, 0)))
        out.append(tuple(row))
    return tuple(out)


def reference_route_for(city_seed: int, split: str, index: int, rng: np.random.Generator,
                        config: RouteConfig = SHORT_ROUTES, test_fraction: float = 0.2) -> Route:
    """Route number ``index`` of ``split`` laid out by the reference rules, drawn with ``rng``.

    Generated routes give no starting heading, which the reference treats as
    "any": it is drawn uniformly from the whole degrees 0..359. Then each
    forward-point candidate is kept with probability ``1 - drop_probability``.
    """
    route = route_for(city_seed, split, index, config, test_fraction)
    init = float(rng.integers(360))
    keep = rng.random((len(route.key_points) - 1, config.interpolation_points)) >= config.drop_probability
    return reference_route(route, init_heading=init, start_observed=start_observation(city_seed, route, init, config),
                           candidates=reference_candidates(city_seed, split, index, config, test_fraction), keep=keep)


def start_observation(city_seed: int, route: Route, heading: float, config: RouteConfig = SHORT_ROUTES) -> Observed:
    """What can be seen at the start of a generated route facing ``heading``."""
    city = city_for_seed(city_seed)
    landmarks = [city.place_by_name[n] for n in route.landmarks if n]
    return _observe(city, route.key_points[0], heading, landmarks, config, False, 0)


@lru_cache(maxsize=4096)
def route_for(city_seed: int, split: str, index: int, config: RouteConfig = SHORT_ROUTES,
              test_fraction: float = 0.2) -> Route:
    """Route number ``index`` of ``split`` in the city of ``city_seed`` (cached).

    The route seed is derived from ``(city_seed, split, index)``, so route
    ``N`` of a split is the same everywhere.
    """
    seed = int(_route_rng(city_seed, split, index).integers(2**62))
    return generate_route(city_for_seed(city_seed), seed, split=split, config=config,
                          test_fraction=test_fraction, route_id=f"city{city_seed}/{split}/{index}")
