"""Synthetic cities: a street network with buildings and named places.

:func:`generate_city` is a pure function of ``(seed, config)``: it builds its
own ``np.random.default_rng(seed)`` and nothing else, so the same seed gives
the same city on any machine. :func:`city_for_seed` caches the result, since
routes, observations and street views all consult the same city.

The street network starts from a rotated grid whose block lengths are
jittered, then loses some interior street segments (making T-junctions),
gains diagonal streets across some blocks (making 5-way intersections) and
dead-end stubs at the edge of town and inside blocks (where a removed
segment leaves a cul-de-sac). Streets are straight between nodes, and the
grid lines stay straight through intersections, so a walk "straight on"
keeps its bearing exactly.

Buildings are placed street by street: along each side of each street
segment, rectangles of random frontage and depth stand behind the sidewalk,
skipping any that would overlap a street or another building. A share of
them hold a *place* (one of the 20 V-IRL types) with a unique name, whose
storefront faces the street it was placed along; a corner building also
carries its sign on the face that looks onto the cross street.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString, Polygon

from gym_virl.city.names import PLACE_TYPES, make_place_name
from gym_virl.geometry import bearing, bearing_between


@dataclass(frozen=True)
class CityConfig:
    """Parameters of the city generator (lengths in metres).

    Attributes:
        grid_cols: Grid nodes along the first street direction.
        grid_rows: Grid nodes along the second street direction.
        block_min: Shortest block length.
        block_max: Longest block length.
        road_width: Curb-to-curb width of every street.
        sidewalk_width: Width of the sidewalk between curb and buildings.
        removed_fraction: Share of interior grid segments removed (each
            leaves two T-junctions, or a cul-de-sac stub).
        culdesac_fraction: Share of removed segments replaced by a dead-end
            stub from one end.
        diagonal_fraction: Share of blocks crossed by a diagonal street.
        stub_fraction: Share of edge-of-town nodes given a dead-end stub
            leading out of town.
        building_width: Range of building frontages.
        building_depth: Range of building depths.
        building_gap: Range of gaps between neighbouring buildings.
        floors: Range of storeys (styles scale this when drawing).
        place_fraction: Share of buildings that hold a named place.
        furniture_spacing: Distance between curbside slots for trees, lamps
            and benches (which styles fill in).
    """

    grid_cols: int = 8
    grid_rows: int = 8
    block_min: float = 55.0
    block_max: float = 115.0
    road_width: float = 12.0
    sidewalk_width: float = 3.5
    removed_fraction: float = 0.1
    culdesac_fraction: float = 0.5
    diagonal_fraction: float = 0.12
    stub_fraction: float = 0.35
    building_width: tuple[float, float] = (9.0, 17.0)
    building_depth: tuple[float, float] = (10.0, 16.0)
    building_gap: tuple[float, float] = (0.0, 1.5)
    floors: tuple[int, int] = (2, 8)
    place_fraction: float = 0.7
    furniture_spacing: float = 11.0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field with an impossible value."""
        if self.grid_cols < 3 or self.grid_rows < 3:
            raise ValueError("grid_cols and grid_rows must be at least 3")
        if not 0 < self.block_min <= self.block_max:
            raise ValueError("need 0 < block_min <= block_max")
        if self.block_min < 2 * (self.road_width / 2 + self.sidewalk_width) + 20:
            raise ValueError("block_min is too short for two sidewalks and a building")
        for name in ("removed_fraction", "culdesac_fraction", "diagonal_fraction",
                     "stub_fraction", "place_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name in ("building_width", "building_depth", "building_gap"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be an increasing pair of non-negative numbers")
        if not 1 <= self.floors[0] <= self.floors[1]:
            raise ValueError("floors must be an increasing pair of positive integers")

    @property
    def frontage_offset(self) -> float:
        """Distance from a street's centre line to the building line."""
        return self.road_width / 2 + self.sidewalk_width


@dataclass(frozen=True)
class Street:
    """A straight street segment between two nodes.

    Attributes:
        id: Index in :attr:`City.streets`.
        u: Start node.
        v: End node.
        kind: ``"grid"``, ``"diagonal"`` or ``"stub"`` (dead end at ``v``).
    """

    id: int
    u: int
    v: int
    kind: str


@dataclass(frozen=True)
class Building:
    """A building: a convex footprint extruded to a height.

    Attributes:
        id: Index in :attr:`City.buildings`.
        footprint: Corners in counter-clockwise order; face ``i`` runs from
            corner ``i`` to corner ``i + 1``, and face 0 is the street front.
        floors: Storeys before a style's scaling.
        street: Street the front faces.
        place: Index of the place it holds, or ``None``.
        sign_faces: Faces that carry the place's sign (the front, and the
            side of a corner building that looks onto a cross street).
        variant: A number in ``[0, 1)`` that styles use to vary colours and
            details, so that looks are a pure function of the city.
    """

    id: int
    footprint: tuple[tuple[float, float], ...]
    floors: int
    street: int
    place: int | None
    sign_faces: tuple[int, ...]
    variant: float


@dataclass(frozen=True)
class Place:
    """A named place with a storefront on a street.

    Attributes:
        id: Index in :attr:`City.places`.
        name: Unique name within the city.
        type: One of :data:`~gym_virl.city.names.PLACE_TYPES`.
        position: Middle of the storefront at ground level (on the building line).
        street: Street the storefront faces.
        side: ``"left"`` or ``"right"`` of the street, looking from its ``u`` to ``v``.
        along: Distance from the street's ``u`` node to the storefront's middle.
        facing: Bearing of the storefront's outward normal (towards the street).
        building: The building that holds it.
    """

    id: int
    name: str
    type: str
    position: tuple[float, float]
    street: int
    side: str
    along: float
    facing: float
    building: int


@dataclass(frozen=True)
class FurnitureSlot:
    """A curbside spot a style may fill with a tree, a lamp post or a bench.

    Attributes:
        position: Ground point.
        facing: Bearing from the slot towards the street's centre line.
        variant: A number in ``[0, 1)`` the style compares with its densities.
    """

    position: tuple[float, float]
    facing: float
    variant: float


@dataclass(eq=False)
class City:
    """A generated city. Treat as read-only; build with :func:`generate_city`.

    Attributes:
        seed: The seed it was generated from.
        config: The generator parameters.
        nodes: ``(n, 2)`` node positions in metres (east, north).
        streets: Street segments.
        buildings: Buildings, each with a convex footprint.
        places: Named places.
        furniture: Curbside furniture slots.
        markings: ``(m, 4, 2)`` ground quads of lane dashes and crosswalk stripes.
        rotation: Rotation of the underlying grid, degrees.
    """

    seed: int
    config: CityConfig
    nodes: np.ndarray
    streets: tuple[Street, ...]
    buildings: tuple[Building, ...]
    places: tuple[Place, ...]
    furniture: tuple[FurnitureSlot, ...]
    markings: np.ndarray
    rotation: float
    _adjacency: dict[int, tuple[tuple[int, int], ...]] = field(repr=False)

    # -- graph ---------------------------------------------------------------

    def neighbours(self, node: int) -> tuple[tuple[int, int], ...]:
        """``(street id, other node)`` for every street at ``node``."""
        return self._adjacency.get(node, ())

    def degree(self, node: int) -> int:
        """Number of street segments meeting at ``node``."""
        return len(self._adjacency.get(node, ()))

    def is_intersection(self, node: int) -> bool:
        """Whether three or more street segments meet at ``node``."""
        return self.degree(node) >= 3

    def node_xy(self, node: int) -> tuple[float, float]:
        """Position of ``node`` as a tuple."""
        return (float(self.nodes[node, 0]), float(self.nodes[node, 1]))

    def street_length(self, street: int) -> float:
        """Length of a street segment."""
        return self._street_lengths[street]

    @cached_property
    def _street_lengths(self) -> tuple[float, ...]:
        # Route generation asks for these thousands of times per route.
        return tuple(float(np.hypot(*(self.nodes[s.v] - self.nodes[s.u]))) for s in self.streets)

    def street_bearing(self, street: int, from_node: int) -> float:
        """Bearing of ``street`` leaving ``from_node``."""
        s = self.streets[street]
        other = s.v if from_node == s.u else s.u
        return bearing_between(self.node_xy(from_node), self.node_xy(other))

    @cached_property
    def intersection_nodes(self) -> np.ndarray:
        """Indices of the nodes where three or more segments meet."""
        return np.array([n for n in range(len(self.nodes)) if self.is_intersection(n)], dtype=int)

    @cached_property
    def intersection_xy(self) -> np.ndarray:
        """``(k, 2)`` positions of :attr:`intersection_nodes`."""
        return self.nodes[self.intersection_nodes].reshape(-1, 2)

    @cached_property
    def place_positions(self) -> np.ndarray:
        """``(n, 2)`` positions of :attr:`places`, in their order."""
        return np.array([p.position for p in self.places], dtype=float).reshape(-1, 2)

    # -- geometry ------------------------------------------------------------

    @cached_property
    def centerlines(self) -> MultiLineString:
        """All street centre lines."""
        return MultiLineString(
            [[self.node_xy(s.u), self.node_xy(s.v)] for s in self.streets]
        )

    @cached_property
    def road_area(self) -> Polygon:
        """The carriageway: centre lines buffered by half the road width."""
        return self.centerlines.buffer(self.config.road_width / 2, quad_segs=4)

    @cached_property
    def footprints(self) -> list[Polygon]:
        """Building footprints as shapely polygons, indexed like :attr:`buildings`."""
        return [Polygon(b.footprint) for b in self.buildings]

    @cached_property
    def footprint_tree(self) -> shapely.STRtree:
        """Spatial index over :attr:`footprints`."""
        return shapely.STRtree(self.footprints)

    @cached_property
    def building_centroids(self) -> np.ndarray:
        """``(n, 2)`` footprint centroids."""
        return np.array([np.mean(b.footprint, axis=0) for b in self.buildings], dtype=float)

    @cached_property
    def building_radii(self) -> np.ndarray:
        """Distance from each footprint centroid to its farthest corner."""
        out = np.empty(len(self.buildings))
        for i, b in enumerate(self.buildings):
            pts = np.asarray(b.footprint)
            out[i] = float(np.max(np.hypot(*(pts - self.building_centroids[i]).T)))
        return out

    @cached_property
    def place_by_name(self) -> dict[str, Place]:
        """Places keyed by their (unique) name."""
        return {p.name: p for p in self.places}

    def line_of_sight(
        self, eye: tuple[float, float], target: tuple[float, float], ignore: int | None = None
    ) -> bool:
        """Whether the ground-level sight line from ``eye`` to ``target`` misses every building.

        ``ignore`` is a building to leave out (the one whose facade holds the
        target point).
        """
        line = LineString([eye, target])
        for idx in self.footprint_tree.query(line, predicate="intersects"):
            if int(idx) != ignore:
                return False
        return True

    def sign_point(self, place: Place, offset: float = 0.3) -> tuple[float, float]:
        """A ground point just in front of a place's storefront."""
        rad = math.radians(place.facing)
        return (
            place.position[0] + offset * math.sin(rad),
            place.position[1] + offset * math.cos(rad),
        )

    def faces_towards(self, place: Place, eye: tuple[float, float]) -> bool:
        """Whether ``eye`` is on the street side of the place's storefront."""
        rad = math.radians(place.facing)
        dx, dy = eye[0] - place.position[0], eye[1] - place.position[1]
        return dx * math.sin(rad) + dy * math.cos(rad) > 0.5

    def place_visible(self, place: Place, eye: tuple[float, float]) -> bool:
        """Whether the storefront of ``place`` can be seen from ``eye``.

        True when ``eye`` is in front of the storefront and the sight line to
        it crosses no other building: exactly the condition under which the
        renderer draws the storefront's sign unoccluded.
        """
        return self.faces_towards(place, eye) and self.line_of_sight(
            eye, self.sign_point(place), ignore=place.building
        )


# ---------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------


def _grid_nodes(config: CityConfig, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    cols, rows = config.grid_cols, config.grid_rows
    xs = np.concatenate([[0.0], np.cumsum(rng.uniform(config.block_min, config.block_max, cols - 1))])
    ys = np.concatenate([[0.0], np.cumsum(rng.uniform(config.block_min, config.block_max, rows - 1))])
    xs -= xs.mean()
    ys -= ys.mean()
    rotation = float(rng.uniform(0.0, 90.0))
    rad = math.radians(rotation)
    # Rotate the grid clockwise by `rotation` degrees so its streets run at
    # bearings `rotation` and `rotation + 90`.
    cos, sin = math.cos(rad), math.sin(rad)
    nodes = np.empty((cols * rows, 2))
    for i in range(cols):
        for j in range(rows):
            x, y = xs[i], ys[j]
            nodes[i * rows + j] = (x * cos + y * sin, -x * sin + y * cos)
    return nodes, rotation


def _connected(n_nodes: int, edges: set[tuple[int, int]]) -> bool:
    adj: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    seen = {0}
    stack = [0]
    while stack:
        for nxt in adj[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return len(seen) == n_nodes


def _street_network(
    config: CityConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int, str]], float]:
    nodes, rotation = _grid_nodes(config, rng)
    cols, rows = config.grid_cols, config.grid_rows

    def nid(i: int, j: int) -> int:
        return i * rows + j

    grid_edges: set[tuple[int, int]] = set()
    for i in range(cols):
        for j in range(rows):
            if i + 1 < cols:
                grid_edges.add((nid(i, j), nid(i + 1, j)))
            if j + 1 < rows:
                grid_edges.add((nid(i, j), nid(i, j + 1)))

    def degree(n: int, edges: set[tuple[int, int]]) -> int:
        return sum(1 for a, b in edges if n in (a, b))

    # Remove interior segments whose both ends are 4-way: each becomes a T.
    candidates = sorted(e for e in grid_edges if degree(e[0], grid_edges) == 4 and degree(e[1], grid_edges) == 4)
    order = rng.permutation(len(candidates))
    n_remove = int(round(config.removed_fraction * len(candidates)))
    removed: list[tuple[int, int]] = []
    for k in order:
        if len(removed) >= n_remove:
            break
        e = candidates[int(k)]
        if degree(e[0], grid_edges) < 4 or degree(e[1], grid_edges) < 4:
            continue
        trial = grid_edges - {e}
        if _connected(len(nodes), trial):
            grid_edges = trial
            removed.append(e)

    edges: list[tuple[int, int, str]] = [(a, b, "grid") for a, b in sorted(grid_edges)]
    node_list = [tuple(p) for p in nodes]

    # Cul-de-sacs: part of a removed segment comes back as a dead-end stub.
    for a, b in removed:
        if rng.random() >= config.culdesac_fraction:
            continue
        if rng.random() < 0.5:
            a, b = b, a
        frac = float(rng.uniform(0.3, 0.4))
        end = nodes[a] + frac * (nodes[b] - nodes[a])
        node_list.append(tuple(end))
        edges.append((a, len(node_list) - 1, "stub"))

    # Diagonals across some blocks, at most one per node and at most 5-way.
    deg = defaultdict(int)
    for a, b, _ in edges:
        deg[a] += 1
        deg[b] += 1
    has_diagonal: set[int] = set()
    for i in range(cols - 1):
        for j in range(rows - 1):
            if rng.random() >= config.diagonal_fraction:
                continue
            corners = (nid(i, j), nid(i + 1, j), nid(i + 1, j + 1), nid(i, j + 1))
            w = float(np.hypot(*(nodes[corners[1]] - nodes[corners[0]])))
            h = float(np.hypot(*(nodes[corners[3]] - nodes[corners[0]])))
            if not 0.6 <= w / h <= 1.67:
                continue
            if any(deg[c] == 1 for c in corners):
                continue
            a, b = (corners[0], corners[2]) if rng.random() < 0.5 else (corners[1], corners[3])
            if a in has_diagonal or b in has_diagonal or deg[a] >= 5 or deg[b] >= 5:
                continue
            # A cul-de-sac stub inside this block would cross the diagonal.
            block = Polygon([nodes[c] for c in corners])
            if any(kind == "stub" and block.buffer(-1.0).contains(shapely.Point(node_list[q]))
                   for p, q, kind in edges):
                continue
            edges.append((a, b, "diagonal"))
            has_diagonal.update((a, b))
            deg[a] += 1
            deg[b] += 1

    # Dead-end stubs leading out of town from the edge.
    centre = nodes.mean(axis=0)
    for i in range(cols):
        for j in range(rows):
            on_edge = i in (0, cols - 1) or j in (0, rows - 1)
            if not on_edge or rng.random() >= config.stub_fraction:
                continue
            n = nid(i, j)
            # Outward along a grid direction: away from the grid neighbour that exists.
            outward = []
            if i == 0:
                outward.append(nodes[nid(0, j)] - nodes[nid(1, j)])
            if i == cols - 1:
                outward.append(nodes[nid(i, j)] - nodes[nid(i - 1, j)])
            if j == 0:
                outward.append(nodes[nid(i, 0)] - nodes[nid(i, 1)])
            if j == rows - 1:
                outward.append(nodes[nid(i, j)] - nodes[nid(i, j - 1)])
            direction = outward[int(rng.integers(len(outward)))]
            direction = direction / np.hypot(*direction)
            length = float(rng.uniform(30.0, 50.0))
            end = nodes[n] + length * direction
            if np.hypot(*(end - centre)) < np.hypot(*(nodes[n] - centre)):
                continue
            node_list.append(tuple(end))
            edges.append((n, len(node_list) - 1, "stub"))
    return np.array(node_list, dtype=float), edges, rotation


def _rect(origin: np.ndarray, along: np.ndarray, normal: np.ndarray, a0: float, a1: float,
          depth: float, offset: float) -> list[tuple[float, float]]:
    p0 = origin + along * a0 + normal * offset
    p1 = origin + along * a1 + normal * offset
    p2 = p1 + normal * depth
    p3 = p0 + normal * depth
    return [tuple(map(float, p)) for p in (p0, p1, p2, p3)]


def _ccw(points: list[tuple[float, float]]) -> bool:
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True):
        area += x0 * y1 - x1 * y0
    return area > 0


def _place_buildings(
    config: CityConfig,
    rng: np.random.Generator,
    nodes: np.ndarray,
    streets: list[Street],
) -> tuple[list[Building], list[Place]]:
    offset = config.frontage_offset
    lines = MultiLineString([[nodes[s.u], nodes[s.v]] for s in streets])
    street_zone = lines.buffer(offset - 0.05, quad_segs=4)
    road_zone = lines.buffer(config.road_width / 2 + 0.5, quad_segs=4)
    shapely.prepare(street_zone)
    shapely.prepare(road_zone)
    degree = defaultdict(int)
    for s in streets:
        degree[s.u] += 1
        degree[s.v] += 1

    cell = 25.0
    grid: dict[tuple[int, int], list[int]] = defaultdict(list)
    polys: list[Polygon] = []
    buildings: list[Building] = []
    places: list[Place] = []
    taken: set[str] = set()

    def cells_of(poly: Polygon):
        x0, y0, x1, y1 = poly.bounds
        for cx in range(int(math.floor(x0 / cell)), int(math.floor(x1 / cell)) + 1):
            for cy in range(int(math.floor(y0 / cell)), int(math.floor(y1 / cell)) + 1):
                yield (cx, cy)

    for s in streets:
        pu, pv = nodes[s.u], nodes[s.v]
        length = float(np.hypot(*(pv - pu)))
        along = (pv - pu) / length
        left = np.array([-along[1], along[0]])  # left of u->v in an east-north frame
        start_margin = offset if degree[s.u] > 1 else 1.0
        end_margin = offset if degree[s.v] > 1 else 1.0
        for side, normal in (("left", left), ("right", -left)):
            a = start_margin + float(rng.uniform(*config.building_gap))
            while True:
                width = float(rng.uniform(*config.building_width))
                end = length - end_margin
                if a + width > end:
                    width = end - a
                    if width < config.building_width[0] * 0.7:
                        break
                depth = float(rng.uniform(*config.building_depth))
                corners = _rect(pu, along, normal, a, a + width, depth, offset)
                if not _ccw(corners):
                    # Reverse the winding, keeping the front (p0, p1) as face 0.
                    corners = [corners[1], corners[0], corners[3], corners[2]]
                poly = Polygon(corners)
                ok = not street_zone.intersects(poly)
                if ok:
                    for c in cells_of(poly):
                        if any(polys[k].intersects(poly) for k in grid[c]):
                            ok = False
                            break
                if ok:
                    bid = len(buildings)
                    polys.append(poly)
                    for c in cells_of(poly):
                        grid[c].append(bid)
                    # Face 0 (corner 0 -> 1) is the street front either way.
                    facing = bearing(-normal[0], -normal[1])
                    sign_faces = [0]
                    for f in (1, 3):  # the two side faces
                        p, q = np.array(corners[f]), np.array(corners[(f + 1) % 4])
                        mid = (p + q) / 2
                        edge = q - p
                        out = np.array([edge[1], -edge[0]]) / np.hypot(*edge)
                        probe = shapely.Point(*(mid + out * (config.sidewalk_width + 1.0)))
                        if road_zone.contains(probe):
                            sign_faces.append(f)
                    place_id = None
                    if rng.random() < config.place_fraction:
                        place_id = len(places)
                        ptype = PLACE_TYPES[int(rng.integers(len(PLACE_TYPES)))]
                        mid_along = a + width / 2
                        places.append(
                            Place(
                                id=place_id,
                                name=make_place_name(ptype, rng, taken),
                                type=ptype,
                                position=tuple(map(float, pu + along * mid_along + normal * offset)),
                                street=s.id,
                                side=side,
                                along=mid_along,
                                facing=facing,
                                building=bid,
                            )
                        )
                    buildings.append(
                        Building(
                            id=bid,
                            footprint=tuple(corners),
                            floors=int(rng.integers(config.floors[0], config.floors[1] + 1)),
                            street=s.id,
                            place=place_id,
                            sign_faces=tuple(sign_faces) if place_id is not None else (),
                            variant=float(rng.random()),
                        )
                    )
                a += width + float(rng.uniform(*config.building_gap))
    return buildings, places


def _furniture(config: CityConfig, rng: np.random.Generator, nodes: np.ndarray,
               streets: list[Street]) -> list[FurnitureSlot]:
    slots = []
    curb = config.road_width / 2 + 0.9
    clear = config.frontage_offset + 2.0
    for s in streets:
        pu, pv = nodes[s.u], nodes[s.v]
        length = float(np.hypot(*(pv - pu)))
        along = (pv - pu) / length
        left = np.array([-along[1], along[0]])
        for normal in (left, -left):
            a = clear + float(rng.uniform(0, config.furniture_spacing))
            while a < length - clear:
                p = pu + along * a + normal * curb
                slots.append(
                    FurnitureSlot(
                        position=(float(p[0]), float(p[1])),
                        facing=bearing(-normal[0], -normal[1]),
                        variant=float(rng.random()),
                    )
                )
                a += config.furniture_spacing * float(rng.uniform(0.8, 1.2))
    return slots


def _markings(config: CityConfig, nodes: np.ndarray, streets: list[Street],
              degree: dict[int, int]) -> np.ndarray:
    quads: list[list[tuple[float, float]]] = []
    half = config.road_width / 2

    def quad(p: np.ndarray, along: np.ndarray, across: np.ndarray, a0: float, a1: float,
             c0: float, c1: float) -> list[tuple[float, float]]:
        return [tuple(map(float, p + along * a + across * c)) for a, c in
                ((a0, c0), (a1, c0), (a1, c1), (a0, c1))]

    for s in streets:
        pu, pv = nodes[s.u], nodes[s.v]
        length = float(np.hypot(*(pv - pu)))
        along = (pv - pu) / length
        across = np.array([-along[1], along[0]])
        # Centre-line dashes between the crossings.
        a = config.frontage_offset + 4.0
        while a + 3.0 < length - config.frontage_offset - 4.0:
            quads.append(quad(pu, along, across, a, a + 3.0, -0.08, 0.08))
            a += 8.0
        # Zebra crossings where the segment meets an intersection.
        for node, sign, base in ((s.u, 1.0, pu), (s.v, -1.0, pv)):
            if degree[node] < 3 or length < 2 * (config.frontage_offset + 4.0):
                continue
            a0 = config.frontage_offset + 0.3
            c = -half + 0.6
            while c + 0.5 <= half - 0.4:
                quads.append(quad(base, along * sign, across, a0, a0 + 3.0, c, c + 0.5))
                c += 1.0
    return np.array(quads, dtype=float).reshape(-1, 4, 2)


def generate_city(seed: int, config: CityConfig | None = None) -> City:
    """Generate the city for ``seed``: a pure function of ``(seed, config)``.

    Args:
        seed: Any non-negative integer.
        config: Generator parameters; defaults to :class:`CityConfig`.

    Returns:
        The city. Prefer :func:`city_for_seed`, which caches it.

    Example:
        >>> city = generate_city(0)
        >>> len(city.places) > 300 and len({p.name for p in city.places}) == len(city.places)
        True
        >>> sorted({city.degree(n) for n in range(len(city.nodes))})
        [1, 2, 3, 4, 5]
    """
    config = config or CityConfig()
    config.validate()
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"a city seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([int(seed), 0x5C17])
    nodes, edge_list, rotation = _street_network(config, rng)
    streets = [Street(id=k, u=a, v=b, kind=kind) for k, (a, b, kind) in enumerate(edge_list)]
    adjacency: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for s in streets:
        adjacency[s.u].append((s.id, s.v))
        adjacency[s.v].append((s.id, s.u))
    degree = {n: len(v) for n, v in adjacency.items()}
    buildings, places = _place_buildings(config, rng, nodes, streets)
    furniture = _furniture(config, rng, nodes, streets)
    markings = _markings(config, nodes, streets, degree)
    return City(
        seed=int(seed),
        config=config,
        nodes=nodes,
        streets=tuple(streets),
        buildings=tuple(buildings),
        places=tuple(places),
        furniture=tuple(furniture),
        markings=markings,
        rotation=rotation,
        _adjacency={n: tuple(v) for n, v in adjacency.items()},
    )


@lru_cache(maxsize=8)
def city_for_seed(seed: int, config: CityConfig | None = None) -> City:
    """:func:`generate_city`, cached per ``(seed, config)``."""
    return generate_city(seed, config)
