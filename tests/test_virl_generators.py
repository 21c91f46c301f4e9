"""gym_virl's pure functions: compass arithmetic, city generator, route generator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from gym_virl.city import CityConfig, city_for_seed, generate_city
from gym_virl.city.names import PLACE_TYPES
from gym_virl.geometry import (
    COMPASS,
    RELATIVE_SIDES,
    angle_diff,
    compass_steps,
    relative_side,
    relative_turn_word,
    snap_bearing,
)
from gym_virl.routes import LONG_ROUTES, SHORT_ROUTES, generate_route, pair_split, route_for

# --------------------------------------------------------------------------- geometry


def test_relative_turns_wrap_around_north():
    # Reference defect 5: 350 -> 10 degrees was labelled "left".
    assert angle_diff(10, 350) == pytest.approx(20)
    assert angle_diff(350, 10) == pytest.approx(-20)
    assert relative_turn_word(0, 7) == "slightly right"  # northwest -> north
    assert relative_turn_word(7, 0) == "slightly left"
    assert relative_turn_word(1, 7) == "right"  # northwest -> northeast across north
    assert relative_turn_word(6, 0) == "left"  # north -> west
    assert relative_turn_word(4, 0) is None and relative_turn_word(3, 0) is None


@pytest.mark.parametrize("heading", [0.0, 13.0, 91.0, 179.0, 250.0, 359.5])
def test_relative_side_agrees_with_vector_geometry(heading):
    rng = np.random.default_rng(int(heading * 10))
    for _ in range(200):
        target = float(rng.uniform(0, 360))
        side = relative_side(heading, target)
        rel = math.radians(target - heading)
        forward, lateral = math.cos(rel), math.sin(rel)  # lateral > 0: to the right
        if abs(angle_diff(target, heading) % 45 - 22.5) < 1e-6:
            continue  # exactly on a sector edge
        if "left" in side:
            assert lateral < 0
        if "right" in side:
            assert lateral > 0
        if "front" in side:
            assert forward > 0
        if "back" in side:
            assert forward < 0
        if side in ("left", "right"):
            assert abs(forward) < math.sin(math.radians(22.5)) + 1e-9


def test_snap_bearing_bins_and_tie_breaking():
    assert [snap_bearing(45 * k) for k in range(8)] == list(range(8))
    assert snap_bearing(359.0) == 0 and snap_bearing(22.4) == 0 and snap_bearing(22.6) == 1
    assert snap_bearing(22.5) == 1  # exact tie: clockwise
    # Near an edge, the previous leg decides: of the two bins beside the edge,
    # the one whose announced turn is closest to the true turn.
    for prev_b, prev_c in ((290.0, 6), (110.0, 2), (200.0, 4), (20.0, 0)):
        for b in (21.0, 23.5, 111.0, 113.5, 201.5, 293.0):
            edge = round((b - 22.5) / 45)
            pair = {edge % 8, (edge + 1) % 8}
            c = snap_bearing(b, previous=(prev_b, prev_c))
            assert c in pair
            (other,) = pair - {c}
            true_turn = angle_diff(b, prev_b)
            assert abs(compass_steps(c, prev_c) * 45 - true_turn) <= abs(
                compass_steps(other, prev_c) * 45 - true_turn
            ) + 1e-9
    # The same street described after different legs can snap differently,
    # always so that the words fit the turn actually made.
    assert snap_bearing(23.0, previous=(290.0, 6)) == 0  # +93 after west: "right", north
    assert snap_bearing(23.0, previous=(70.0, 2)) == 1  # -47 after east: "slightly left", northeast


# --------------------------------------------------------------------------- city


def test_city_is_a_pure_function_of_the_seed():
    a, b = generate_city(11), generate_city(11)
    assert np.array_equal(a.nodes, b.nodes)
    assert a.streets == b.streets and a.buildings == b.buildings and a.places == b.places
    assert np.array_equal(a.markings, b.markings)
    c = generate_city(12)
    assert c.nodes.shape != a.nodes.shape or not np.allclose(c.nodes, a.nodes)


@pytest.mark.parametrize("seed", [0, 3])
def test_city_invariants(seed):
    city = city_for_seed(seed)
    degrees = {city.degree(n) for n in range(len(city.nodes))}
    assert {1, 3, 4, 5} <= degrees and max(degrees) <= 5  # dead ends, T, 4-way, 5-way
    assert {s.kind for s in city.streets} == {"grid", "diagonal", "stub"}
    assert city.rotation % 90 != 0
    # Block lengths are jittered: grid segments are not all alike.
    lengths = [city.street_length(s.id) for s in city.streets if s.kind == "grid"]
    assert np.std(lengths) > 5
    # Unique plausible names, all 20 types present.
    names = [p.name for p in city.places]
    assert len(set(n.lower() for n in names)) == len(names)
    assert all(n.isascii() and n.isprintable() for n in names)
    assert {p.type for p in city.places} == set(PLACE_TYPES)
    # Buildings stand off the streets and do not overlap.
    street_zone = city.centerlines.buffer(city.config.frontage_offset - 0.1)
    polys = city.footprints
    assert not any(street_zone.intersects(p) for p in polys)
    tree = shapely.STRtree(polys)
    for i, p in enumerate(polys):
        for j in tree.query(p, predicate="intersects"):
            if j != i:
                assert p.intersection(polys[j]).area < 1e-6
    # A place's storefront is the front face of its building and faces its street.
    for place in city.places[:200]:
        b = city.buildings[place.building]
        p, q = np.array(b.footprint[0]), np.array(b.footprint[1])
        assert np.allclose((p + q) / 2, place.position, atol=1e-6)
        street = city.streets[place.street]
        line = shapely.LineString([city.node_xy(street.u), city.node_xy(street.v)])
        rad = math.radians(place.facing)
        ahead = (place.position[0] + 3 * math.sin(rad), place.position[1] + 3 * math.cos(rad))
        assert line.distance(shapely.Point(ahead)) < line.distance(shapely.Point(place.position))
        # Its side of the street matches the geometry.
        u, v = np.array(city.node_xy(street.u)), np.array(city.node_xy(street.v))
        d, w = v - u, np.array(place.position) - u
        assert (d[0] * w[1] - d[1] * w[0] > 0) == (place.side == "left")


def test_city_config_validation():
    with pytest.raises(ValueError, match="grid_cols"):
        generate_city(0, CityConfig(grid_cols=2))
    with pytest.raises(ValueError, match="seed"):
        generate_city(-1)


# --------------------------------------------------------------------------- routes


def _routes(split="train", n=60, config=SHORT_ROUTES, city_seed=0):
    return [route_for(city_seed, split, i, config) for i in range(n)]


def test_route_is_a_pure_function_of_its_seeds():
    city = city_for_seed(0)
    a = generate_route(city, 1234)
    b = generate_route(generate_city(0), 1234)
    assert a == b
    assert generate_route(city, 1235) != a
    assert route_for(0, "test", 5) == generate_route(
        city, int(np.random.default_rng([0, 1, 5, 0x40A7E]).integers(2**62)), split="test",
        route_id="city0/test/5",
    )


@pytest.mark.parametrize("config", [SHORT_ROUTES, LONG_ROUTES], ids=["short", "long"])
def test_route_invariants(config):
    city = city_for_seed(0)
    road = city.road_area.buffer(0.5)
    inter = city.intersection_nodes
    for route in _routes(n=50 if config is SHORT_ROUTES else 25, config=config):
        keys = route.key_points
        assert config.min_turns <= route.num_turns <= config.max_turns
        assert config.min_distance <= math.dist(keys[0], keys[-1]) <= config.max_distance
        # Connected: every leg runs along streets.
        for a, b in zip(keys, keys[1:], strict=False):
            assert road.contains(shapely.LineString([a, b]))
            assert math.dist(a, b) >= config.min_leg - 1e-6
        # Turns happen at intersections; nothing else sits at one.
        for k, p in enumerate(keys):
            d = np.min(np.hypot(city.nodes[inter, 0] - p[0], city.nodes[inter, 1] - p[1]))
            assert (d < 1e-6) == (0 < k < len(keys) - 1)
        # Headings snap to the compass and match the legs.
        for k, (a, b) in enumerate(zip(keys, keys[1:], strict=False)):
            true = math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360
            assert abs(angle_diff(true, route.leg_headings[k])) < 1e-6
            assert abs(angle_diff(true, 45 * route.leg_compass[k])) <= 22.5 + 3.0
        # Instructions: a turn and a move sentence per leg, numbered in order.
        assert len(route.instructions) == 2 * (len(keys) - 1)
        lines = route.numbered_instructions().splitlines()
        assert [line.split(". ", 1)[0] for line in lines] == [str(i + 1) for i in range(len(lines))]
        for k in range(len(keys) - 1):
            turn = route.instructions[2 * k]
            assert COMPASS[route.leg_compass[k]] in turn
        # The rail: gold actions, observations, relative and absolute agreement.
        rail = route.rail
        assert rail[0].key_point == 0 and rail[-1].action == "stop"
        assert [p.key_point for p in rail if p.key_point is not None] == list(range(len(keys)))
        for point in rail:
            assert point.observed.at_intersection == (point.key_point not in (None, 0, len(keys) - 1))
            if point.key_point is None:
                assert point.action == "forward" and point.instruction % 2 == 1
                d = np.min(np.hypot(city.nodes[inter, 0] - point.position[0],
                                    city.nodes[inter, 1] - point.position[1]))
                assert d >= config.node_clearance
            absolute = point.gold_action("absolute")
            relative = point.gold_action("relative")
            if point.action == "turn":
                word = relative[len("turn_direction("):-1]
                steps = {"left": -2, "slightly left": -1, "slightly right": 1, "right": 2}[word]
                assert absolute == f"turn_direction({COMPASS[(point.compass + steps) % 8]})"
                assert point.instruction % 2 == 0
                assert word in route.instructions[point.instruction]
            else:
                assert absolute == relative
        # Landmark sides in the observation agree with the geometry.
        for point in rail:
            for name, side in point.observed.landmarks:
                place = city.place_by_name[name]
                vx, vy = place.position[0] - point.position[0], place.position[1] - point.position[1]
                h = math.radians(point.heading)
                lateral = vx * math.cos(h) - vy * math.sin(h)
                forward = vx * math.sin(h) + vy * math.cos(h)
                assert ("left" not in side or lateral < 0) and ("right" not in side or lateral > 0)
                assert ("front" not in side or forward > 0) and ("back" not in side or forward < 0)
                assert city.place_visible(place, point.position)
        # The landmark a move sentence names is observed, on that side, at the leg's end.
        for k in range(len(keys) - 1):
            end = next(p for p in rail if p.key_point == k + 1)
            lm = route.landmarks[k]
            sentence = route.instructions[2 * k + 1]
            if lm is None:
                assert "next intersection" in sentence
                continue
            side = dict(end.observed.landmarks).get(lm)
            assert side is not None and f"{lm} is on your {side}" in sentence or (
                k == len(keys) - 2 and f"{lm}, on your {side}" in sentence
            )
        assert route.destination_name == route.landmarks[-1]
        assert route.relative_compatible()


def test_long_routes_reach_eight_turns():
    turns = {r.num_turns for r in _routes(n=80, config=LONG_ROUTES)}
    assert max(turns) == 8 and min(turns) == 3


def test_train_and_test_routes_never_overlap():
    def pairs(split, n):
        return {frozenset((r.start_name, r.destination_name)) for r in _routes(split, n)}

    train, test = pairs("train", 200), pairs("test", 80)
    assert train and test and not (train & test)
    for r in _routes("test", 30):
        assert pair_split(0, r.start_name, r.destination_name) == "test"


def test_some_routes_have_no_landmark_and_all_have_turns_of_45_or_90():
    routes = _routes(n=150)
    assert any(lm is None for r in routes for lm in r.landmarks[:-1])
    words = {p.gold_action("relative") for r in routes for p in r.rail if p.action == "turn"}
    assert words == {f"turn_direction({w})" for w in ("left", "right", "slightly left", "slightly right")}


def test_route_errors():
    with pytest.raises(ValueError, match="split"):
        generate_route(city_for_seed(0), 1, split="dev")
    with pytest.raises(ValueError, match="min_turns"):
        generate_route(city_for_seed(0), 1, config=LONG_ROUTES.__class__(min_turns=3, max_turns=2))
    assert RELATIVE_SIDES[0] == "front"
