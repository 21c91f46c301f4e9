"""Real V-IRL data: loading, validation, safe unpickling, panorama views.

Fixtures are built here: generated routes exported to the V-IRL layout
(``route_infos.json`` with milestone blocks, a pano mapping pickled with the
standard pickle module from plain dicts and tuples, small equirectangular
JPEGs whose red channel encodes the compass bearing of each column).
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import gym_virl  # noqa: F401  (registers the ids)
from gym_virl.geometry import COMPASS, angle_diff
from gym_virl.realdata import (
    VirlDataError,
    load_dataset,
    load_pano_mapping,
    perspective_view,
    restricted_loads,
)
from gym_virl.routes import route_for
from gym_virl.wrappers import ActionSpaceVariant

ORIGIN = (40.7484, -73.9857)
R_EARTH = 6_371_008.8
PANO_W, PANO_H = 256, 128


def to_latlng(xy):
    lat = ORIGIN[0] + math.degrees(xy[1] / R_EARTH)
    lng = ORIGIN[1] + math.degrees(xy[0] / (R_EARTH * math.cos(math.radians(ORIGIN[0]))))
    return [lat, lng]


def compass_pano(rotation: float) -> np.ndarray:
    """An equirectangular panorama whose red channel is the compass bearing of the
    column (V-IRL convention: bearing c at longitude c - 180 + rotation)."""
    x = np.arange(PANO_W)
    lon = ((x + 0.5) / PANO_W - 0.5) * 360.0
    bearing = (lon + 180.0 - rotation) % 360.0
    img = np.zeros((PANO_H, PANO_W, 3), np.uint8)
    img[..., 0] = np.round(bearing / 360.0 * 255.0).astype(np.uint8)[None, :]
    img[..., 1] = np.linspace(0, 255, PANO_H).astype(np.uint8)[:, None]  # latitude
    return img


def decode_bearing(pixel) -> float:
    return float(pixel[0]) / 255.0 * 360.0


def block(k, landmark, distance, heading, compass):
    return (
        "{\n"
        f'"intersection_idx": "{k + 1}",\n'
        f'"landmarks": "{landmark}",\n'
        f'"distance": "{distance} meters",\n'
        '"human_heading": "0",\n'
        f'"to_next_intersection_heading": "{heading} ({compass})",\n'
        "}\n"
    )


def export_routes(routes):
    entries = []
    for r in routes:
        blocks = []
        for k in range(len(r.key_points) - 1):
            end = next(p for p in r.rail if p.key_point == k + 1)
            name = r.landmarks[k]
            side = dict(end.observed.landmarks).get(name) if name else None
            text = f"{name} is on your {side}" if name and side else "No landmark nearby"
            dist = round(math.dist(r.key_points[k], r.key_points[k + 1]))
            blocks.append(block(k, text, dist, round(r.leg_headings[k]), COMPASS[r.leg_compass[k]]))
        entries.append(
            {
                "start_place": {"name": r.start_name, "relocated_geocode": to_latlng(r.key_points[0])},
                "dest_place": {"name": r.destination_name, "geocode": to_latlng(r.key_points[-1])},
                "init_heading": 0,
                "route_results": {
                    "geocode_list": [to_latlng(p) for p in r.key_points[1:]],
                    "landmark_list": [{"name": n, "geocode": to_latlng(r.key_points[k + 1])}
                                      for k, n in enumerate(r.landmarks) if n],
                },
                "milestone_info": "".join(blocks),
            }
        )
    return entries


def write_dataset(root: Path, routes, images=True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    entries = export_routes(routes)
    (root / "route_infos.json").write_text(json.dumps([entries, len(entries)]))
    if images:
        mapping = {}
        views = root / "street_views"
        views.mkdir()
        k = 0
        for r in routes:
            for a, b in zip(r.key_points, r.key_points[1:], strict=False):
                n = max(1, int(math.dist(a, b) // 8))
                for j in range(n + 1):
                    p = (a[0] + (b[0] - a[0]) * j / n, a[1] + (b[1] - a[1]) * j / n)
                    pano_id = f"pano{k:04d}"
                    rotation = (k * 37.5) % 360
                    Image.fromarray(compass_pano(rotation)).save(views / f"{pano_id}.jpg", quality=95)
                    (views / f"{pano_id}.metadata.json").write_text(json.dumps({"rotation": rotation}))
                    mapping[tuple(to_latlng(p))] = pano_id
                    k += 1
        with open(root / "gps_pano_mapping.pkl", "wb") as f:
            pickle.dump(mapping, f)
    return root


@pytest.fixture(scope="module")
def routes():
    return [route_for(0, "train", i) for i in range(6)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, routes):
    return write_dataset(tmp_path_factory.mktemp("virl_real"), routes)


def play(env, options):
    env.reset(seed=0, options=options)
    while True:
        _, reward, te, tr, info = env.step(env.unwrapped.oracle_answer())
        assert info["verdict"] == "correct", info
        if te or tr:
            return info


@pytest.mark.parametrize("action_space", ["absolute", "relative"])
def test_text_mode_loads_and_oracle_solves(data_dir, routes, action_space):
    env = gym.make("VIRL-L-v0", data_dir=data_dir, action_space=action_space)
    assert env.unwrapped.num_routes() == len(routes)
    for k, route in enumerate(routes):
        info = play(env, {"route": k})
        assert info["success"] and info["city_style"] == "real" and info["split"] == "all"
        loaded = env.unwrapped._route
        # Same legs, same turns, same landmarks as the generated route it came from.
        assert loaded.leg_compass == route.leg_compass
        assert loaded.landmarks == route.landmarks
        assert len(loaded.instructions) == 2 * (len(route.key_points) - 1)
        turns = [p.target for p in loaded.rail if p.action == "turn"][1:]
        assert turns == list(route.leg_compass[1:])
        for point in loaded.rail:
            if point.key_point not in (None, 0):
                expected = [(n, s) for n, s in next(
                    p for p in route.rail if p.key_point == point.key_point).observed.landmarks
                    if n == route.landmarks[point.key_point - 1]]
                assert list(point.observed.landmarks) == expected
    with pytest.raises(ValueError, match="out of range"):
        env.reset(options={"route": len(routes)})


def test_relative_variant_leaves_out_routes_it_cannot_express(tmp_path, routes):
    entries = export_routes(routes[:3])
    # Route 1 now starts facing the opposite way: a U-turn, which no compass-step word says.
    first = entries[1]["milestone_info"].split("to_next_intersection_heading")[1]
    degrees = int(first.split('"')[2].split(" ")[0])
    entries[1]["init_heading"] = (degrees + 180) % 360 or 180
    root = tmp_path / "u"
    root.mkdir()
    (root / "route_infos.json").write_text(json.dumps([entries, 3]))
    absolute = gym.make("VIRL-L-v0", data_dir=root, rail_rules="gengym")
    relative = gym.make("VIRL-L-v0", data_dir=root, action_space="relative", rail_rules="gengym")
    assert absolute.unwrapped.num_routes() == 3 and relative.unwrapped.num_routes() == 2
    assert load_dataset(root).excluded("relative") == {1: "a turn of 135 or 180 degrees has no relative action"}
    assert absolute.unwrapped.num_routes(action_space="relative") == 2
    wrapped = ActionSpaceVariant(gym.make("VIRL-L-v0", data_dir=root, rail_rules="gengym"), "relative")
    for k in range(2):
        play(wrapped, {"route": k})
    with pytest.raises(ValueError, match="2 routes"):
        wrapped.reset(options={"route": 2})
    info = play(absolute, {"route": 1})
    assert info["success"]
    # The reference rules name every turn by its angle: a U-turn is "right".
    reference = gym.make("VIRL-L-v0", data_dir=root, action_space="relative")
    assert reference.unwrapped.num_routes() == 3 and load_dataset(root).excluded("relative", "reference") == {}
    _, info = reference.reset(options={"route": 1})
    assert info["gold_action"] == "turn_direction(right)"
    assert play(reference, {"route": 1})["success"]


def test_splits_partition_the_file(data_dir, routes):
    train = gym.make("VIRL-L-v0", data_dir=data_dir, split="train").unwrapped.num_routes()
    test = gym.make("VIRL-L-v0", data_dir=data_dir, split="test").unwrapped.num_routes()
    assert train + test == len(routes)


def test_an_empty_split_is_a_clear_error(tmp_path, routes):
    root = write_dataset(tmp_path / "one", routes[:1], images=False)
    empty = next(s for s in ("train", "test")
                 if gym.make("VIRL-L-v0", data_dir=root, split=s).unwrapped.num_routes() == 0)
    env = gym.make("VIRL-L-v0", data_dir=root, split=empty)
    for options in (None, {"route": 0}):
        with pytest.raises(ValueError, match=f"the {empty} split of .* has no routes"):
            env.reset(seed=0, options=options)
    play(gym.make("VIRL-L-v0", data_dir=root, split="all"), {"route": 0})


def test_image_mode_cuts_views_with_the_right_headings(data_dir, routes):
    env = gym.make("VIRL-VL-v0", data_dir=data_dir, view_size=48)
    gap = 2
    for k in range(3):
        obs, info = env.reset(options={"route": k})
        u = env.unwrapped
        for _ in range(4):
            heading = u._route.rail[u._rail_index].heading
            img = obs["image"]
            assert img.shape == (98, 98, 3)
            centres = [(24, 24), (24, 24 + 48 + gap), (24 + 48 + gap, 24), (24 + 48 + gap, 24 + 48 + gap)]
            for offset, (r, c) in zip((0, 90, 180, 270), centres, strict=True):
                # Front, right, back, left in reading order.
                want = (heading + offset) % 360
                if abs(angle_diff(want, 0)) < 4:
                    continue  # the colour code wraps at north: pixels there blend 0 and 255
                got = decode_bearing(img[r, c - 1])  # centre of the view, left of the seam pixel
                assert abs(angle_diff(got, want)) < 6, (offset, got, heading)
            # Looking down the view, the horizon row is mid-height: the green channel
            # (latitude) grows towards the bottom.
            assert img[40, 24, 1] > img[8, 24, 1]
            obs, _, te, tr, _ = env.step(u.oracle_answer())
            if te or tr:
                break


def test_image_env_over_real_data_pickles_small(data_dir):
    env = gym.make("VIRL-VL-v0", data_dir=data_dir, view_size=48)
    obs, _ = env.reset(seed=0, options={"route": 1})
    assert env.unwrapped._dataset._panos  # panoramas were decoded for the first view...
    clone = pickle.loads(pickle.dumps(env))
    assert not clone.unwrapped._dataset._panos  # ...and do not travel with the env
    assert len(pickle.dumps(env)) < 500_000  # routes and the pano index only
    a = env.step(env.unwrapped.oracle_answer())[0]
    b = clone.step(clone.unwrapped.oracle_answer())[0]
    assert np.array_equal(a["image"], b["image"]) and a["text"] == b["text"]


def test_perspective_view_wraps_the_seam_and_keeps_straight_lines():
    pano = compass_pano(0.0)
    view = perspective_view(pano, 0.0, 0.0, 64)  # north: the panorama's seam
    bearings = [decode_bearing(view[32, x]) for x in (4, 31, 59)]
    assert abs(angle_diff(bearings[0], 360 - 40)) < 6 and abs(angle_diff(bearings[2], 40)) < 6
    rotated = perspective_view(compass_pano(90.0), 90.0, 123.0, 32)
    assert abs(angle_diff(decode_bearing(rotated[16, 15]), 123.0)) < 6


def test_missing_imagery(tmp_path, routes):
    root = write_dataset(tmp_path / "d", routes[:2])
    (root / "street_views" / "pano0000.jpg").unlink()  # the start of route 0
    text_env = gym.make("VIRL-L-v0", data_dir=root)
    play(text_env, {"route": 0})  # text mode needs no imagery
    env = gym.make("VIRL-VL-v0", data_dir=root, view_size=32)
    with pytest.raises(FileNotFoundError, match="missing panorama pano0000"):
        env.reset(options={"route": 0})
    no_images = write_dataset(tmp_path / "e", routes[:1], images=False)
    with pytest.raises(FileNotFoundError, match="gps_pano_mapping.pkl"):
        gym.make("VIRL-VL-v0", data_dir=no_images, view_size=32).reset(seed=0)
    play(gym.make("VIRL-L-v0", data_dir=no_images), {"route": 0})


def _mutate(entries, path, value):
    obj = entries[0]
    for key in path[:-1]:
        obj = obj[key]
    if value is KeyError:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


@pytest.mark.parametrize(
    "path, value, match",
    [
        (("start_place", "relocated_geocode"), KeyError, r"route 0\.start_place: missing field 'relocated_geocode'"),
        (("start_place", "relocated_geocode"), [91.0, 0.0], "out of range"),
        (("dest_place", "name"), "", r"dest_place\.name"),
        (("route_results", "geocode_list"), [], "geocode_list"),
        (("milestone_info",), "no blocks here", "milestone_info holds no"),
        (("milestone_info",), '{\n"landmarks": "x",\n}\n', "blocks for"),
        (("init_heading",), "north", "init_heading"),
    ],
)
def test_malformed_route_files_name_file_and_field(tmp_path, routes, path, value, match):
    entries = export_routes(routes[:1])
    _mutate(entries, path, copy.deepcopy(value))
    root = tmp_path / "bad"
    root.mkdir()
    (root / "route_infos.json").write_text(json.dumps([entries, 1]))
    with pytest.raises(VirlDataError, match="route_infos.json") as err:
        load_dataset(root)
    assert err.match(match)


def test_malformed_headings_and_containers(tmp_path, routes):
    entries = export_routes(routes[:1])
    entries[0]["milestone_info"] = entries[0]["milestone_info"].replace("(", "[").replace(")", "]")
    root = tmp_path / "h"
    root.mkdir()
    (root / "route_infos.json").write_text(json.dumps([entries, 1]))
    with pytest.raises(VirlDataError, match="block 1.*to_next_intersection_heading"):
        load_dataset(root)
    for content, match in (("{not json", "not valid JSON"), ('{"a": 1}', r"\[routes, count\]"),
                           (json.dumps([export_routes(routes[:1]), 5]), "count 5")):
        (root / "route_infos.json").write_text(content)
        with pytest.raises(VirlDataError, match=match):
            load_dataset(root)
    with pytest.raises(FileNotFoundError, match="route_infos.json"):
        gym.make("VIRL-L-v0", data_dir=tmp_path / "nowhere")


@pytest.mark.parametrize(
    "old, new, match",
    [
        ('"distance": "', '"distance": "' + "9" * 400, "block 1: distance .* is not a street distance"),
        ('"to_next_intersection_heading": "', '"to_next_intersection_heading": "' + "9" * 400,
         "block 1: to_next_intersection_heading .* is not a finite angle"),
    ],
    ids=["distance", "heading"],
)
def test_out_of_range_numbers_in_milestones(tmp_path, routes, old, new, match):
    # Numbers too large for a float used to escape as OverflowError / math errors.
    entries = export_routes(routes[:1])
    entries[0]["milestone_info"] = entries[0]["milestone_info"].replace(old, new, 1)
    (tmp_path / "route_infos.json").write_text(json.dumps([entries, 1]))
    with pytest.raises(VirlDataError, match="route_infos.json: route 0.milestone_info " + match):
        load_dataset(tmp_path)


def test_deeply_nested_json_files_are_data_errors(tmp_path, routes):
    nested = "[" * 100_000 + "]" * 100_000
    (tmp_path / "route_infos.json").write_text(nested)
    with pytest.raises(VirlDataError, match="route_infos.json: not valid JSON"):
        load_dataset(tmp_path)
    root = write_dataset(tmp_path / "d", routes[:1])
    (root / "street_views" / "pano0000.metadata.json").write_text(nested)
    with pytest.raises(VirlDataError, match="pano0000.metadata.json: not valid JSON"):
        gym.make("VIRL-VL-v0", data_dir=root, view_size=32).reset(seed=0)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_is_read_without_running_code(tmp_path, routes):
    marker = tmp_path / "pwned"
    assert restricted_loads(pickle.dumps({(1.0, 2.0): "a", "k": [1, 2.5, (3,)], "s": {1}})) == {
        (1.0, 2.0): "a", "k": [1, 2.5, (3,)], "s": {1}}
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        restricted_loads(pickle.dumps(_Exploit(marker)))
    root = write_dataset(tmp_path / "d", routes[:1])
    (root / "gps_pano_mapping.pkl").write_bytes(pickle.dumps({(40.7, -73.9): _Exploit(marker)}))
    with pytest.raises(VirlDataError, match="gps_pano_mapping.pkl.*refusing"):
        load_pano_mapping(root / "gps_pano_mapping.pkl")
    with pytest.raises(VirlDataError, match="gps_pano_mapping.pkl"):
        gym.make("VIRL-VL-v0", data_dir=root, view_size=32).reset(seed=0)
    assert not marker.exists()
    for bad, match in (({(1.0,): "x"}, "not a \\(lat, lng\\) pair"), ({(1.0, 2.0): "../x"}, "plain id"),
                       ([1, 2], "expected a dict"), ({(math.nan, math.nan): "p"}, "pair in range"),
                       ({(40.7, math.inf): "p"}, "pair in range"), ({(91.0, 0.0): "p"}, "pair in range")):
        (root / "gps_pano_mapping.pkl").write_bytes(pickle.dumps(bad))
        with pytest.raises(VirlDataError, match=match):
            load_pano_mapping(root / "gps_pano_mapping.pkl")
    (root / "gps_pano_mapping.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(VirlDataError, match="not a readable pano mapping"):
        load_pano_mapping(root / "gps_pano_mapping.pkl")


def test_bad_panorama_files(tmp_path, routes):
    root = write_dataset(tmp_path / "d", routes[:1])
    (root / "street_views" / "pano0000.metadata.json").write_text('{"rot": 1}')
    env = gym.make("VIRL-VL-v0", data_dir=root, view_size=32)
    with pytest.raises(VirlDataError, match="pano0000.metadata.json.*rotation"):
        env.reset(seed=0)
    (root / "street_views" / "pano0000.metadata.json").write_text('{"rotation": 0}')
    (root / "street_views" / "pano0000.jpg").write_bytes(b"not an image")
    with pytest.raises(VirlDataError, match="pano0000.jpg.*not a readable image"):
        gym.make("VIRL-VL-v0", data_dir=root, view_size=32).reset(seed=0)


def test_decompression_bomb_panorama_is_a_data_error(tmp_path, routes, monkeypatch):
    # Pillow refuses to open an image far above its pixel limit (a decompression bomb);
    # the loader reports it like any unreadable panorama.
    root = write_dataset(tmp_path / "d", routes[:1])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 8)
    with pytest.raises(VirlDataError, match="pano0000.jpg: not a readable image"):
        gym.make("VIRL-VL-v0", data_dir=root, view_size=32).reset(seed=0)
