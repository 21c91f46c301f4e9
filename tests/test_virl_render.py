"""Street views: layout, determinism, styles, and signs only where the geometry puts them."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from gym_virl.city import city_for_seed
from gym_virl.render import (
    HELD_OUT_STYLES,
    STYLES,
    TRAIN_STYLES,
    grid_shape,
    render_view,
    render_views,
    resolve_styles,
)
from gym_virl.render.streetview import VIEW_NAMES, VIEW_OFFSETS, grid_gap
from gym_virl.routes import route_for

#: Which views may show something on each relative side (views are 90 degrees wide).
SIDE_VIEWS = {
    "front": {0}, "right front": {0, 1}, "right": {1}, "right back": {1, 2},
    "back": {2}, "left back": {2, 3}, "left": {3}, "left front": {3, 0},
}


def test_grid_layout_is_front_right_back_left():
    city = city_for_seed(0)
    point = route_for(0, "train", 1).rail[2]
    size = 40
    grid = render_views(city, "harbor", point.position, point.heading, size)
    assert grid.shape == grid_shape(size) and grid.dtype == np.uint8
    assert VIEW_NAMES == ("front", "right", "back", "left") and VIEW_OFFSETS == (0, 90, 180, 270)
    gap = grid_gap(size)
    for k, offset in enumerate(VIEW_OFFSETS):
        view = np.asarray(render_view(city, "harbor", point.position, (point.heading + offset) % 360, size))
        r, c = divmod(k, 2)
        tile = grid[r * (size + gap): r * (size + gap) + size, c * (size + gap): c * (size + gap) + size]
        assert np.array_equal(tile, view)
    assert not grid[size:size + gap].any() and not grid[:, size:size + gap].any()


def test_landmark_signs_appear_in_the_view_of_their_side_and_are_legible():
    city = city_for_seed(0)
    at_key_points = 0
    for index in range(10):
        route = route_for(0, "train", index)
        for point in route.rail:
            if not point.observed.landmarks:
                continue
            record = []
            render_views(city, "harbor", point.position, point.heading, 320, record=record)
            for name, side in point.observed.landmarks:
                shown = [s for s in record if s.name == name]
                assert shown, (name, side)
                assert {s.view for s in shown} & SIDE_VIEWS[side], (name, side, [s.view for s in shown])
            if point.key_point in (None, 0):
                continue
            # The landmark the instructions name at this intersection is legible:
            # letters at least 6 px tall at 320 px (12 px in the default 640 px views).
            own = route.landmarks[point.key_point - 1]
            if own is not None:
                assert max(s.letter_px for s in record if s.name == own) >= 6
                at_key_points += 1
    assert at_key_points >= 10


def test_signs_drawn_are_storefronts_facing_the_camera():
    city = city_for_seed(0)
    point = route_for(0, "train", 4).rail[1]
    record = []
    render_views(city, "harbor", point.position, point.heading, 256, record=record)
    assert record
    for sign in record:
        assert city.faces_towards(city.place_by_name[sign.name], point.position)
        x0, y0, x1, y1 = sign.bbox
        assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256


def test_pixels_are_a_pure_function_of_the_inputs_even_across_processes():
    point = route_for(2, "test", 0).rail[0]
    args = (point.position, point.heading)
    code = (
        "import hashlib, sys\n"
        "from gym_virl.city import city_for_seed\n"
        "from gym_virl.render import render_views\n"
        f"img = render_views(city_for_seed(2), 'old_town', {args[0]!r}, {args[1]!r}, 96)\n"
        "sys.stdout.write(hashlib.sha256(img.tobytes()).hexdigest())\n"
    )
    other = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    mine = render_views(city_for_seed(2), "old_town", *args, 96)
    assert hashlib.sha256(mine.tobytes()).hexdigest() == other
    assert np.array_equal(mine, render_views(city_for_seed(2), "old_town", *args, 96))


def test_styles_are_distinct_and_grouped():
    assert len(STYLES) >= 10 and TRAIN_STYLES == ("harbor",) and len(HELD_OUT_STYLES) == 9
    assert set(TRAIN_STYLES).isdisjoint(HELD_OUT_STYLES)
    assert resolve_styles(["neon", "held_out"])[0] == "neon"
    with pytest.raises(ValueError, match="unknown city style"):
        resolve_styles("vienna")
    for bad in ([1], ["neon", None], [["neon"]]):
        with pytest.raises(ValueError, match="unknown city style"):
            resolve_styles(bad)
    for bad in (5, None, {"neon"}):
        with pytest.raises(ValueError, match="a city style is a name"):
            resolve_styles(bad)
    point = route_for(0, "train", 0).rail[-1]
    images = {name: render_views(city_for_seed(0), name, point.position, point.heading, 48).astype(float)
              for name in STYLES}
    names = list(images)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(images[a] - images[b]).mean() > 4.0, (a, b)
    # Night is darker than day.
    assert images["neon"].mean() < images["harbor"].mean() - 30


@pytest.mark.parametrize("style", ["neon", "old_town", "nordic"])
def test_destination_sign_legible_in_every_style(style):
    city = city_for_seed(0)
    route = route_for(0, "train", 5)
    point = route.rail[-1]
    (name, side), *_ = point.observed.landmarks
    record = []
    render_views(city, style, point.position, point.heading, 320, record=record)
    views = {s.view for s in record if s.name == name and s.letter_px >= 8}
    assert views & SIDE_VIEWS[side]


def test_warping_in_place_matches_transform_and_paste():
    # The renderer warps opaque textures straight into the canvas through
    # Pillow's image core; the public route (transform to a transparent image,
    # paste through its alpha) must give the same pixels.
    from PIL import Image

    from gym_virl.render.streetview import _warp_into

    rng = np.random.default_rng(0)
    texture = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    coeffs = (0.9, 0.1, -5.0, -0.05, 1.2, 3.0, 0.002, -0.001)
    box = (7, 5, 61, 50)
    for resample in (Image.Resampling.NEAREST, Image.Resampling.BILINEAR):
        base = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        before = np.asarray(base).copy()
        public = base.copy()
        warped = texture.convert("RGBA").transform((box[2] - box[0], box[3] - box[1]),
                                                   Image.Transform.PERSPECTIVE, coeffs, resample)
        public.paste(warped, box[:2], warped)
        _warp_into(base, box, texture, coeffs, resample)
        assert np.array_equal(np.asarray(base), np.asarray(public))
        # The texture covers part of the box: pixels inside it change, the rest are kept.
        changed = (np.asarray(base) != before).any(axis=-1)
        assert 0.2 < changed[box[1]:box[3], box[0]:box[2]].mean() < 0.95
        assert not changed[:box[1]].any() and not changed[:, :box[0]].any()


def test_polygon_fill_through_the_core_matches_imagedraw():
    from PIL import Image, ImageDraw

    from gym_virl.render.streetview import _fill_polygon

    rng = np.random.default_rng(1)
    for _ in range(20):
        xy = rng.uniform(-40, 100, size=8).tolist()
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        a, b = Image.new("RGB", (64, 64), (5, 6, 7)), Image.new("RGB", (64, 64), (5, 6, 7))
        ImageDraw.Draw(a).polygon(xy, fill=colour)
        _fill_polygon(ImageDraw.Draw(b), xy, colour)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_letters_from_cached_glyphs_match_imagedraw_text():
    # Sign lettering is put together from cached letter masks; it must give
    # the pixels ImageDraw.text gives, for the generator's own names, every
    # case the styles use, strokes with and without an outline colour, and
    # whole- and half-pixel positions (the lettering is centred).
    from PIL import Image, ImageDraw

    from gengym_core.fonts import font
    from gym_virl.render.textures import _letters

    names = sorted(p.name for p in city_for_seed(0).places)[:40] + ["Wij fjord", "AVENUE Quay's", "x"]
    rng = np.random.default_rng(2)
    for k, name in enumerate(names):
        text = (name, name.upper(), name.title())[k % 3]
        size = int(rng.integers(4, 60))
        stroke = (0, 1, 3)[k % 3]
        fill = (250, 240, 200, 255)
        stroke_fill = fill if k % 2 else (20, 30, 40, 255)
        xy = (float(rng.integers(0, 8)) + (0.0, 0.5, 0.3)[k % 3], float(rng.integers(0, 8)) + (0.0, 0.5)[k % 2])
        width, height = int(font(size).getlength(text)) + 20, size * 2
        a = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        b = a.copy()
        ImageDraw.Draw(a).text(xy, text, font=font(size), fill=fill, stroke_width=stroke, stroke_fill=stroke_fill)
        _letters(ImageDraw.Draw(b), xy, text, size, fill, stroke, stroke_fill)
        assert np.asarray(a)[..., 3].any()
        assert np.array_equal(np.asarray(a), np.asarray(b)), (text, size, stroke, xy)


def test_texture_sizes_are_known_before_drawing():
    # The renderer places a quad from its texture's size and fetches (maybe
    # draws) the texture only if the quad lands on screen.
    from gym_virl.render.textures import (
        look_texture,
        look_texture_size,
        sign_texture,
        sign_texture_size,
    )

    for style in ("harbor", "neon", "desert"):
        for floors, width_q, level in ((1, 9, 0), (4, 13, 1), (9, 17, 3), (6, 11, 4)):
            tex = look_texture(style, 0, floors, width_q, True, -1, 1, 0.9, 0, level)
            assert tex.size == look_texture_size(style, floors, width_q, level)
        for width_m, height_m, vertical, level in ((11.3, 1.5, False, 0), (1.1, 6.45, True, 2), (0.5, 0.3, False, 4)):
            tex = sign_texture("Corner Bakery", style, width_m, height_m, vertical, level)
            assert tex.size == sign_texture_size(width_m, height_m, level)


def test_cell_cache_finds_everything_in_range():
    # _nearby tests only the candidates cached for the position's cell; they
    # must include everything a full search finds, in the same order.
    from gym_virl.render.streetview import MARKING_RANGE, MAX_DISTANCE, PROP_RANGE, _nearby, _props

    city = city_for_seed(0)
    props = _props(city, "harbor")
    cents, radii, quads = city.building_centroids, city.building_radii, city.markings
    rng = np.random.default_rng(3)
    lo, hi = cents.min(axis=0), cents.max(axis=0)
    for x, y in rng.uniform(lo, hi, size=(40, 2)).tolist() + [(40.0, 80.0), (-0.001, 39.999)]:
        near = _nearby(city, "harbor", (x, y))
        full = np.flatnonzero(np.hypot(cents[:, 0] - x, cents[:, 1] - y) < MAX_DISTANCE + radii)
        assert np.array_equal(near.buildings, full)
        marks = quads[np.hypot(quads[:, 0, 0] - x, quads[:, 0, 1] - y) < MARKING_RANGE]
        assert np.array_equal(near.markings, marks)
        lamps = np.flatnonzero(np.hypot(props.xy[:, 0] - x, props.xy[:, 1] - y) < PROP_RANGE)
        assert np.array_equal(near.prop_index, lamps)


def test_road_kept_for_a_position_covers_its_views_up_to_the_road_distance():
    # The road rings kept around a position (clipped once per cell) must hold all
    # of the city's road inside each view's wedge up to ROAD_DISTANCE, at any
    # heading: a clip too tight cut the road near the horizon at diagonal headings.
    import shapely

    from gym_virl.render.streetview import ROAD_DISTANCE, WEDGE_SLOPE, _nearby

    city = city_for_seed(0)
    for r in range(6):  # positions on the streets
        x, y = route_for(0, "train", r).rail[-1].position
        road = _nearby(city, "harbor", (x, y)).road
        rings = np.split(road.xy, road.starts[1:])
        kept = shapely.union_all([shapely.Polygon(ring) for ring in rings[:road.n_outer]])
        kept = kept.difference(shapely.union_all([shapely.Polygon(ring) for ring in rings[road.n_outer:]]))
        for heading in (0.0, 45.0, 135.0, 200.0, 315.0):
            rad = np.radians(heading)
            fwd, right = np.array([np.sin(rad), np.cos(rad)]), np.array([np.cos(rad), -np.sin(rad)])
            far = ROAD_DISTANCE * fwd
            side = WEDGE_SLOPE * ROAD_DISTANCE * right
            wedge = shapely.Polygon([(x, y), tuple((x, y) + far - side), tuple((x, y) + far + side)])
            want = city.road_area.intersection(wedge).area
            assert want > 0
            assert kept.intersection(wedge).area == pytest.approx(want, rel=1e-6, abs=1e-6), (x, y, heading)


def test_texture_cache_budget_bounds_memory_and_rejects_bad_values():
    from gym_virl.render import set_texture_cache_budget, texture_cache_info
    from gym_virl.render.textures import FACADE_CACHE_BYTES, SIGN_CACHE_BYTES

    city = city_for_seed(0)
    point = route_for(0, "train", 3).rail[0]
    try:
        render_views(city, "harbor", point.position, point.heading, 128)
        info = texture_cache_info()
        assert info["facade"]["images"] > 1 and info["facade"]["bytes"] > 0
        assert info["facade"]["max_bytes"] == FACADE_CACHE_BYTES and info["sign"]["max_bytes"] == SIGN_CACHE_BYTES
        small = info["facade"]["bytes"] / 2**20 / 4
        set_texture_cache_budget(facade_mb=small)  # lowering drops textures at once
        after = texture_cache_info()["facade"]
        assert after["bytes"] <= after["max_bytes"] == int(small * 2**20)
        assert after["images"] < info["facade"]["images"]
        # Textures dropped are drawn again, identically.
        misses = after["misses"]
        set_texture_cache_budget(facade_mb=0, sign_mb=0)
        again = render_views(city, "harbor", point.position, point.heading, 128)
        assert texture_cache_info()["facade"]["misses"] > misses
        set_texture_cache_budget(facade_mb=FACADE_CACHE_BYTES / 2**20, sign_mb=SIGN_CACHE_BYTES / 2**20)
        assert np.array_equal(again, render_views(city, "harbor", point.position, point.heading, 128))
        for bad in (-1, float("nan"), float("inf"), "64", True):
            with pytest.raises(ValueError, match="facade_mb"):
                set_texture_cache_budget(facade_mb=bad)
        with pytest.raises(ValueError, match="sign_mb"):  # checked before anything changes
            set_texture_cache_budget(facade_mb=1, sign_mb=-1)
        assert texture_cache_info()["facade"]["max_bytes"] == FACADE_CACHE_BYTES
    finally:
        set_texture_cache_budget(facade_mb=FACADE_CACHE_BYTES / 2**20, sign_mb=SIGN_CACHE_BYTES / 2**20)
