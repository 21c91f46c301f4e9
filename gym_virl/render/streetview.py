"""Street views rendered from a generated city's geometry.

A view is what a pinhole camera 2.5 m above the street sees with a
90-degree field of view: sky and ground, the carriageway (clipped from the
city's road polygon) with its markings, then buildings, trees and lamp posts
drawn far to near (painter's algorithm). Buildings are boxes on their convex
footprints; faces turned away from the camera are skipped, near faces get
their facade texture mapped in perspective through a plane homography, far
ones a flat colour. Every shop sign is a quad on its building's face (or a
blade sign standing out of it), so a place name appears in a view exactly
when the geometry puts its sign in front of the camera.

The four views at a rail point are combined into a 2x2 grid in the order
the prompt promises (the reference got this wrong, defect 6)::

    +--------+--------+
    | front  | right  |
    +--------+--------+
    | back   | left   |
    +--------+--------+

:func:`render_views` is a pure function of (city, style, position, heading,
size). It only draws with Pillow and numpy.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import shapely
from PIL import Image, ImageDraw

from gym_virl.city.generate import City
from gym_virl.render.styles import STYLES, CityStyle
from gym_virl.render.textures import (
    FACADE_PPM,
    SIGN_BAND,
    SIGN_PPM,
    building_height,
    building_wall,
    facade_look,
    face_light,
    face_normal_bearing,
    look_texture,
    look_texture_size,
    mix,
    shade,
    sign_colours,
    sign_texture,
    sign_texture_size,
    stable_seed,
    texture_levels,
)

#: Names of the four views in grid order: top left, top right, bottom left, bottom right.
VIEW_NAMES: tuple[str, ...] = ("front", "right", "back", "left")
#: Heading offset of each view from the agent's heading.
VIEW_OFFSETS: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
#: Camera height above the street, metres.
CAMERA_HEIGHT: float = 2.5
#: Field of view of each view, degrees (horizontal and vertical).
FOV_DEG: float = 90.0
#: Nothing farther than this is drawn, metres.
MAX_DISTANCE: float = 160.0
#: Faces nearer than this get textures; farther ones a flat colour.
TEXTURE_DISTANCE: float = 75.0
#: Signs get lettering when their letters would be at least this many pixels
#: tall; smaller ones are drawn as plain boards (nobody could read them).
MIN_SIGN_PX: float = 4.0
#: Faces seen at fewer screen pixels per metre than this get a flat colour.
MIN_TEXTURE_PPM: float = 3.0
#: The road is drawn up to this distance (beyond it, it is a sliver at the horizon).
ROAD_DISTANCE: float = 115.0
#: Near clipping distance, metres.
NEAR: float = 0.25


def grid_gap(size: int) -> int:
    """Width of the black line between the four views."""
    return max(2, size // 128)


def grid_shape(size: int) -> tuple[int, int, int]:
    """Shape ``(H, W, 3)`` of the 2x2 grid image for views of ``size`` pixels."""
    side = 2 * size + grid_gap(size)
    return (side, side, 3)


@dataclass(frozen=True)
class SignRecord:
    """A sign drawn in a view (for checks that what is shown is justified).

    Attributes:
        name: The place name on the sign.
        view: Index of the view (see :data:`VIEW_NAMES`).
        bbox: Screen bounding box ``(x0, y0, x1, y1)`` within the view.
        letter_px: Approximate on-screen height of its letters.
    """

    name: str
    view: int
    bbox: tuple[int, int, int, int]
    letter_px: float


class _Camera:
    """Pinhole camera at ``CAMERA_HEIGHT`` looking horizontally along ``heading``."""

    __slots__ = ("x", "y", "heading", "size", "f", "cx", "cy", "fwd", "right")

    def __init__(self, position: tuple[float, float], heading: float, size: int) -> None:
        self.x, self.y = float(position[0]), float(position[1])
        self.heading = heading
        self.size = size
        self.f = (size / 2.0) / math.tan(math.radians(FOV_DEG / 2))
        self.cx = size / 2.0
        self.cy = size / 2.0
        rad = math.radians(heading)
        self.fwd = (math.sin(rad), math.cos(rad))
        self.right = (math.cos(rad), -math.sin(rad))

    def to_camera(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lateral offset (right +) and depth of ground points ``(..., 2)``."""
        dx = xy[..., 0] - self.x
        dy = xy[..., 1] - self.y
        return dx * self.right[0] + dy * self.right[1], dx * self.fwd[0] + dy * self.fwd[1]

    def project(self, lateral: np.ndarray, height: np.ndarray, depth: np.ndarray):
        """Screen coordinates of camera-space points (depth must be positive)."""
        u = self.cx + self.f * lateral / depth
        v = self.cy - self.f * (height - CAMERA_HEIGHT) / depth
        return u, v


class _Cameras:
    """The cameras of a position's views (same position and size), to put shared point
    sets into all their frames with one numpy operation each (the same arithmetic
    as :meth:`_Camera.to_camera`, element by element)."""

    def __init__(self, cams: list[_Camera]) -> None:
        self.cams = cams
        first = cams[0]
        self.x, self.y, self.f, self.cx, self.cy, self.size = first.x, first.y, first.f, first.cx, first.cy, first.size
        self.axes = np.array([[c.right[0], c.right[1], c.fwd[0], c.fwd[1]] for c in cams])

    def to_camera(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lateral offsets and depths of ground points ``(..., 2)``, shaped ``(views, ...)``."""
        dx = xy[..., 0] - self.x
        dy = xy[..., 1] - self.y
        shape = (len(self.cams),) + (1,) * dx.ndim
        rx, ry, fx, fy = (self.axes[:, i].reshape(shape) for i in range(4))
        return dx * rx + dy * ry, dx * fx + dy * fy


def _min4(a: np.ndarray) -> np.ndarray:
    """``a.min(axis=-1)`` for a last axis of four (the corners of a footprint or quad).

    numpy's reduction over so short an axis costs several times what three
    element-wise minimums do (about 20 against 3 microseconds on a view's
    footprints), and a step makes a dozen of them. The result is the same.
    """
    return np.minimum(np.minimum(a[..., 0], a[..., 1]), np.minimum(a[..., 2], a[..., 3]))


def _max4(a: np.ndarray) -> np.ndarray:
    """``a.max(axis=-1)`` for a last axis of four (see :func:`_min4`)."""
    return np.maximum(np.maximum(a[..., 0], a[..., 1]), np.maximum(a[..., 2], a[..., 3]))


# ---------------------------------------------------------------------------
# cached backgrounds
# ---------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _sky_panorama(style_name: str, size: int) -> Image.Image:
    """Sky above the horizon for all 360 degrees, ``4 * size`` wide and ``size // 2`` high,
    with one extra view width repeated at the right so any view is one crop."""
    style = STYLES[style_name]
    h, w = size // 2, 4 * size
    t = np.linspace(0.0, 1.0, h)[:, None] ** 1.4
    top = np.array(style.sky_top, float)
    hor = np.array(style.sky_horizon, float)
    sky = (top[None, :] * (1 - t) + hor[None, :] * t)[:, None, :].repeat(w + size, axis=1)
    img = Image.fromarray(sky.astype(np.uint8))
    draw = ImageDraw.Draw(img, "RGBA")
    rng = np.random.default_rng(stable_seed("sky", style_name))
    for _ in range(style.clouds):
        cx = float(rng.uniform(0, w))
        cy = float(rng.uniform(0.1, 0.6)) * h
        for _ in range(5):
            rx = float(rng.uniform(0.03, 0.07)) * size
            ry = rx * float(rng.uniform(0.35, 0.55))
            ox = float(rng.uniform(-1.5, 1.5)) * rx
            oy = float(rng.uniform(-0.4, 0.4)) * ry
            for dx in (-w, 0, w):  # wrap around the seam (the extra width repeats the start)
                draw.ellipse([cx + ox - rx + dx, cy + oy - ry, cx + ox + rx + dx, cy + oy + ry],
                             fill=style.cloud_colour + (200,))
    if style.time_of_day == "night":
        for _ in range(60):
            sx, sy = float(rng.uniform(0, w)), float(rng.uniform(0, 0.7)) * h
            for dx in (0, w):
                draw.point([(sx + dx, sy)], fill=(230, 230, 210, 255))
    return img


@lru_cache(maxsize=32)
def _ground(style_name: str, size: int) -> Image.Image:
    """Ground below the horizon, hazier towards it: ``(size - size // 2, size, 3)``."""
    style = STYLES[style_name]
    h = size - size // 2
    # Distance of each row's ground point; rows near the horizon are far away.
    rows = np.arange(h) + 0.5
    f = size / 2.0
    dist = CAMERA_HEIGHT * f / np.maximum(rows, 0.5)
    haze = style.haze * np.clip(dist / MAX_DISTANCE, 0, 1)
    ground = np.array(shade(style.ground, style.light), float)
    hor = np.array(style.sky_horizon, float)
    col = ground[None, :] * (1 - haze[:, None]) + hor[None, :] * haze[:, None]
    return Image.fromarray(col[:, None, :].repeat(size, axis=1).astype(np.uint8))


@lru_cache(maxsize=32)
def _backdrop(style_name: str, size: int) -> Image.Image:
    """Sky panorama above ground, ``5 * size`` wide: every view's background is one crop."""
    sky = _sky_panorama(style_name, size)
    ground = _ground(style_name, size)
    out = Image.new("RGB", (sky.size[0], size))
    out.paste(sky, (0, 0))
    for x in range(0, sky.size[0], size):
        out.paste(ground, (x, size // 2))
    return out


def _backdrop_start(size: int, heading: float) -> int:
    """Column of :func:`_backdrop` where the view looking along ``heading`` begins."""
    w = 4 * size
    return int(round(((heading - FOV_DEG / 2) % 360.0) / 360.0 * w)) % w


def _background(style_name: str, size: int, heading: float) -> Image.Image:
    start = _backdrop_start(size, heading)
    return _backdrop(style_name, size).crop((start, 0, start + size, size))


# ---------------------------------------------------------------------------
# per-city caches
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Props:
    """Trees and lamp posts a style puts in a city's curbside slots."""

    kind: np.ndarray  # 0: tree, 1: lamp
    xy: np.ndarray


@lru_cache(maxsize=32)
def _props(city: City, style_name: str) -> _Props:
    style = STYLES[style_name]
    kinds, pts = [], []
    for slot in city.furniture:
        if style.trees and slot.variant < style.tree_density:
            kinds.append(0)
            pts.append(slot.position)
        elif style.lamp and slot.variant > 1.0 - style.lamp_density:
            kinds.append(1)
            pts.append(slot.position)
    return _Props(np.array(kinds, dtype=int), np.array(pts, dtype=float).reshape(-1, 2))


@lru_cache(maxsize=65536)
def _haze_at(colour, style_name: str, metres: int):
    """``colour`` faded towards the horizon colour at ``metres`` (whole metres, at most
    ``MAX_DISTANCE``: callers pass ``min(int(dist), int(MAX_DISTANCE))``)."""
    style = STYLES[style_name]
    t = style.haze * min(1.0, metres / MAX_DISTANCE)
    return mix(colour, style.sky_horizon, t) if t > 0.01 else colour


@lru_cache(maxsize=4096)
def _shaded(colour, factor: float):
    return shade(colour, factor)


_INKS: dict[tuple[int, int, int], int] = {}
#: Converts colours to inks: an RGB colour has the same ink on every RGB image,
#: and every canvas here is RGB.
_INK_DRAW = ImageDraw.Draw(Image.new("RGB", (1, 1)))


def _ink(colour: tuple[int, int, int]) -> int:
    """Pillow's drawing-core ink for ``colour`` on an RGB canvas (memoised)."""
    ink = _INKS.get(colour)
    if ink is None:
        ink = _INKS[colour] = _INK_DRAW.draw.draw_ink(colour)
    return ink


@lru_cache(maxsize=65536)
def _hazed_ink(colour, style_name: str, metres: int) -> int:
    """The ink of ``colour`` hazed at ``metres``: :func:`_haze_at`, then :func:`_ink`, in one
    cache lookup (a step draws about a hundred flat faces)."""
    return _ink(_haze_at(colour, style_name, metres))


def _fill_polygon(draw: ImageDraw.ImageDraw, xy: list, colour: tuple[int, int, int]) -> None:
    """``draw.polygon(xy, fill=colour)`` on an RGB image, minus the per-call colour lookup.

    The road, markings and far faces make a few hundred polygons a grid; this
    hands Pillow's drawing core the colour already converted (see :func:`_ink`).
    ``tests/test_virl_render.py`` checks it still draws what ``ImageDraw.polygon``
    draws.
    """
    draw.draw.draw_polygon(xy, _ink(colour), 1)


# ---------------------------------------------------------------------------
# drawing primitives
# ---------------------------------------------------------------------------


def _clip_near(points: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Clip a camera-space polygon (lateral, height, depth) to depth >= NEAR."""
    out = []
    n = len(points)
    for i in range(n):
        a, b = points[i], points[(i + 1) % n]
        a_in, b_in = a[2] >= NEAR, b[2] >= NEAR
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (NEAR - a[2]) / (b[2] - a[2])
            out.append((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), NEAR))
    return out


def _project_poly(cam: _Camera, pts3: list[tuple[float, float, float]]) -> list[tuple[float, float]]:
    f, cx, cy = cam.f, cam.cx, cam.cy
    return [(cx + f * x / z, cy - f * (y - CAMERA_HEIGHT) / z) for x, y, z in pts3]


#: Extra pixels a warp may visit before a band is split off (about what one
#: more call to Pillow costs).
SPLIT_PIXELS: float = 300.0


#: A warp whose perspective divisor changes by less than this across its box
#: is drawn as the affine map it then is (a wall square to the view).
AFFINE_TOLERANCE: float = 1e-9


def _warp_plan(box: tuple[int, int, int, int],
               inv: tuple[tuple[float, float, float], ...]) -> tuple[Image.Transform, tuple] | None:
    """Pillow's transform method and coefficients for warping through the
    texture-from-screen homography ``inv`` into ``box`` (``None`` if degenerate).

    A wall facing the camera squarely has constant depth, so its map is
    affine -- for a level camera a plain scale, which Pillow draws several
    times faster than a perspective map -- and is handed over as one.
    """
    # Output pixel (x, y) of the box is screen pixel (x0 + x + 0.5, y0 + y + 0.5).
    ox, oy = box[0] + 0.5, box[1] + 0.5
    c2 = inv[2][0] * ox + inv[2][1] * oy + inv[2][2]
    if abs(c2) < 1e-12:
        return None
    coeffs = tuple(
        v / c2
        for v in (
            inv[0][0], inv[0][1], inv[0][0] * ox + inv[0][1] * oy + inv[0][2],
            inv[1][0], inv[1][1], inv[1][0] * ox + inv[1][1] * oy + inv[1][2],
            inv[2][0], inv[2][1],
        )
    )
    return _affine_if_square(coeffs, box[2] - box[0], box[3] - box[1])


def _affine_if_square(coeffs: tuple, w: int, h: int) -> tuple[Image.Transform, tuple]:
    if abs(coeffs[6]) * w + abs(coeffs[7]) * h < AFFINE_TOLERANCE:
        a0, a1, a2, a3, a4, a5 = coeffs[:6]
        if abs(a1) * h < AFFINE_TOLERANCE * 1e3 and abs(a3) * w < AFFINE_TOLERANCE * 1e3:
            a1 = a3 = 0.0
        return Image.Transform.AFFINE, (a0, a1, a2, a3, a4, a5)
    return Image.Transform.PERSPECTIVE, coeffs


def _bands(box: tuple[int, int, int, int], inv: tuple[tuple[float, float, float], ...],
           corners: tuple[float, ...], pieces: int) -> list[tuple]:
    """The warps of a wall quad split into ``pieces`` column bands cut to its edges.

    A vertical quad seen by a level camera is a trapezoid on screen: vertical
    sides at ``u_lo`` and ``u_hi`` (``corners`` are ``u_lo, bottom, top, u_hi,
    bottom, top``) and straight top and bottom edges. Pillow's warp visits
    every pixel of its box, so where the slanted edges waste more than
    :data:`SPLIT_PIXELS` per extra call (see :meth:`_Quads.project`), the box
    is split into bands, each cut to the rows between the edges. The pixels
    written are those of one warp of the whole box.
    """
    x0, y0, x1, y1 = box
    ua, ba, ta, ub, bb, tb = corners
    if ub < ua:
        ua, ba, ta, ub, bb, tb = ub, bb, tb, ua, ba, ta
    span = ub - ua
    top_slope, bottom_slope = (tb - ta) / span, (bb - ba) / span
    step = (x1 - x0) / pieces
    out = []
    for i in range(pieces):
        c0 = x0 + int(round(i * step))
        c1 = x1 if i == pieces - 1 else x0 + int(round((i + 1) * step))
        if c1 <= c0:
            continue
        e0, e1 = min(max(c0, ua), ub) - ua, min(max(c1, ua), ub) - ua
        r0 = max(y0, int(math.floor(ta + min(e0 * top_slope, e1 * top_slope))))
        r1 = min(y1, int(math.ceil(ba + max(e0 * bottom_slope, e1 * bottom_slope))))
        if r1 > r0:
            band = (c0, r0, c1, r1)
            plan = _warp_plan(band, inv)
            if plan is not None:
                out.append((band, *plan))
    return out


def _warp_into(canvas: Image.Image, box: tuple[int, int, int, int], texture: Image.Image,
               coeffs: tuple[float, ...], resample: Image.Resampling,
               method: Image.Transform = Image.Transform.PERSPECTIVE) -> None:
    """Warp ``texture`` straight into ``box`` of ``canvas`` (``coeffs`` of a perspective
    or affine ``method``, relative to the box's top-left corner).

    Pillow's transform writes only the pixels whose source lies inside the
    texture when told not to fill, so an opaque texture of the canvas's mode
    can be drawn in place: the same pixels as ``transform`` to a transparent
    image and ``paste`` through its alpha, without the intermediate image, the
    compositing, or the premultiplied-alpha round trip Pillow makes for
    bilinear RGBA. ``Image.transform`` has no public form of this, so it goes
    through the image core (``tests/test_virl_render.py`` checks that it
    still matches the public route). :func:`_run_ops` makes the same core call.
    """
    canvas.im.transform(box, texture.im, method, coeffs, resample, 0)


def _flat_quad(draw: ImageDraw.ImageDraw, cam: _Camera, p: tuple[float, float],
               q: tuple[float, float], z0: float, z1: float, ink: int) -> None:
    """A flat-coloured vertical quad that crosses the near plane, clipped to it
    (``ink`` from :func:`_ink`)."""
    pts = []
    for (x, y), z in ((p, z0), (q, z0), (q, z1), (p, z1)):
        dx, dy = x - cam.x, y - cam.y
        pts.append((dx * cam.right[0] + dy * cam.right[1], z, dx * cam.fwd[0] + dy * cam.fwd[1]))
    clipped = _clip_near(pts)
    if len(clipped) >= 3:
        draw.draw.draw_polygon(_project_poly(cam, clipped), ink, 1)  # as _fill_polygon


@dataclass
class _Quads:
    """Textured vertical quads of one view, projected together.

    Each quad maps a texture onto the vertical rectangle ``origin + s * along``,
    ``s`` in ``[0, width]``, heights ``[z0, z1]``. Drawing a view first lists
    its quads (in painter's order, with everything else), then
    :meth:`project` computes their screen boxes and homographies in one go.
    """

    rows: list[tuple[float, ...]] = field(default_factory=list)
    textures: list[tuple] = field(default_factory=list)

    def add(self, cam: _Camera, origin: tuple[float, float], along: tuple[float, float], width: float,
            z0: float, z1: float, size: tuple[int, int], texture: Callable[..., Image.Image],
            key: tuple) -> int:
        """Add a quad whose texture, of pixel ``size``, is ``texture(*key)`` (fetched
        only if the quad turns out to be on screen)."""
        self.rows.append((origin[0], origin[1], along[0], along[1], width, z0, z1, *size,
                          *cam.right, *cam.fwd))
        self.textures.append((texture, key))
        return len(self.rows) - 1

    def project(self, cam: _Camera) -> list[tuple | None]:
        """Per quad: ``None`` when nothing of it is on screen, else ``(box, texture,
        warps)`` -- the screen bounding box (of the part in front of the near
        plane), the texture's image core, and the warps that draw it as
        ``(box, method, coefficients)`` (see :func:`_warp_plan` and :func:`_bands`).
        The quads may come from several views of ``cam``'s position and size
        (each row holds its own viewing direction).
        """
        if not self.rows:
            return []
        # (The arithmetic is element by element, and grouped so that numpy is
        # called as few times as possible: lo/hi ends, bottom/top heights and
        # the homography's entries go through each formula together.)
        rows = np.array(self.rows, dtype=float)
        ox, oy, ax, ay, width, z0, z1, tw, th = rows[:, :9].T
        # Lateral and depth parts of the origin offset and of the along direction
        # in each row's camera frame (the arithmetic of _Camera.to_camera).
        vec = np.array([[ox - cam.x, oy - cam.y], [ax, ay]])  # (origin/along, x/y, n)
        prod = vec[:, None] * rows[:, 9:13].T.reshape(2, 2, -1)[None]  # (origin/along, right/fwd, x/y, n)
        (a_r, a_d), (e_r, e_d) = prod[:, :, 0] + prod[:, :, 1]
        f, cx, cy, h = cam.f, cam.cx, cam.cy, CAMERA_HEIGHT
        size = cam.size
        with np.errstate(divide="ignore", invalid="ignore"):
            # The part in front of the near plane: depth(s) = a_d + s e_d >= NEAR.
            level = np.abs(e_d) < 1e-9
            s_cut = (NEAR - a_d) / e_d
            s_lo = np.where(~level & (e_d > 0), np.maximum(0.0, s_cut), 0.0)
            s_hi = np.where(~level & (e_d < 0), np.minimum(width, s_cut), width)
            ok = ~(level & (a_d < NEAR)) & (s_hi - s_lo >= 1e-3)
            ppm_x = tw / width
            # Cut by the near plane: the box spans only the part in front, so no
            # screen pixel in it looks at the part behind (the texture stays whole).
            cut = (s_lo > 0.0) | (s_hi < width)
            s_ends = np.array([s_lo, s_hi])
            d_ends = np.maximum(a_d + s_ends * e_d, NEAR)  # depth at the lo and hi ends
            u_lo, u_hi = cx + f * (a_r + s_ends * e_r) / d_ends
            # Rows: bottom (z0) and top (z1); columns: lo and hi ends.
            (b_lo, b_hi), (t_lo, t_hi) = cy - f * (np.array([z0, z1])[:, None] - h) / d_ends
            x0 = np.maximum(0, np.floor(np.minimum(u_lo, u_hi)))
            x1 = np.minimum(size, np.ceil(np.maximum(u_lo, u_hi)))
            y0 = np.maximum(0, np.floor(np.minimum(np.minimum(b_lo, t_lo), np.minimum(b_hi, t_hi))))
            y1 = np.minimum(size, np.ceil(np.maximum(np.maximum(b_lo, t_lo), np.maximum(b_hi, t_hi))))
            ok &= (x1 - x0 >= 1) & (y1 - y0 >= 1)
            # Screen-from-plane homography for plane coordinates (s, z):
            #   [u w, v w, w] = [[f e_r + cx e_d, 0, f a_r + cx a_d],
            #                    [cy e_d, -f, f h + cy a_d],
            #                    [e_d, 0, a_d]] @ [s, z, 1],
            # composed with plane-from-texture s = tx / ppm_x, z = z1 - ty / ppm_y,
            # then inverted (cofactors; its zero entries kept for the same rounding).
            ppm_y = th / (z1 - z0)
            m00, m02 = f * e_r + cx * e_d, f * a_r + cx * a_d
            m10, m12 = cy * e_d, f * h + cy * a_d
            m20, m22 = e_d, a_d
            a, d, g = np.array([m00, m10, m20]) / ppm_x
            b, c = 0.0, m02
            e, g_ = f / ppm_y, m12 - f * z1
            hh, i = 0.0, m22
            co00, co01, co02 = e * i - g_ * hh, g_ * g - d * i, d * hh - e * g
            det = a * co00 + b * co01 + c * co02
            ok &= np.abs(det) >= 1e-18
            r = 1.0 / np.where(ok, det, 1.0)
            inv_t = np.array([
                co00, c * hh - b * i, b * g_ - c * e,
                co01, a * i - c * g, c * d - a * g_,
                co02, b * g - a * hh, a * e - b * d,
            ]) * r
            inv = inv_t.T
            # Coefficients of the whole box (see _warp_plan, same arithmetic).
            ox, oy = x0 + 0.5, y0 + 0.5
            i0, i1, i2, i3, i4, i5, i6, i7, i8 = inv_t
            c2 = i6 * ox + i7 * oy + i8
            degenerate = ~(np.abs(c2) >= 1e-12)
            c2 = np.where(degenerate, 1.0, c2)
            coeffs = (np.array([i0, i1, i0 * ox + i1 * oy + i2, i3, i4, i3 * ox + i4 * oy + i5, i6, i7]) / c2).T
            # Walls square to the view: affine (see _affine_if_square, same tests).
            w, hgt = x1 - x0, y1 - y0
            affine = np.abs(coeffs[:, 6]) * w + np.abs(coeffs[:, 7]) * hgt < AFFINE_TOLERANCE
            scale = (affine & (np.abs(coeffs[:, 1]) * hgt < AFFINE_TOLERANCE * 1e3)
                     & (np.abs(coeffs[:, 3]) * w < AFFINE_TOLERANCE * 1e3))
            coeffs[scale, 1] = 0.0
            coeffs[scale, 3] = 0.0
            # Column bands where slanted edges waste pixels (see _bands).
            span = np.abs(u_hi - u_lo)
            slant = np.where(span > 1e-9, (np.abs(t_hi - t_lo) + np.abs(b_hi - b_lo)) / np.where(span > 1e-9, span, 1.0),
                             0.0)
            pieces = np.where(cut, 1, np.minimum(np.maximum(np.rint((x1 - x0) * np.sqrt(slant / 2.0 / SPLIT_PIXELS)), 1), 8))
        # Only the quads on screen go to Python lists (each of their values once).
        on = np.flatnonzero(ok)
        boxes = np.array([x0, y0, x1, y1])[:, on].T.astype(int)
        corners = np.array([u_lo, b_lo, t_lo, u_hi, b_hi, t_hi]).T
        out: list[tuple | None] = [None] * len(self.rows)
        textures = self.textures
        perspective, affine_method = Image.Transform.PERSPECTIVE, Image.Transform.AFFINE
        for k, box, co, n, bad, aff in zip(
                on.tolist(), boxes.tolist(), coeffs[on].tolist(), pieces[on].astype(int).tolist(),
                degenerate[on].tolist(), affine[on].tolist(), strict=True):
            fetch, key = textures[k]
            texture = fetch(*key)
            box = tuple(box)
            if n == 1:
                if bad:
                    warps = []
                elif aff:
                    warps = [(box, affine_method, tuple(co[:6]))]
                else:
                    warps = [(box, perspective, tuple(co))]
            else:
                m = inv[k].tolist()
                warps = _bands(box, ((m[0], m[1], m[2]), (m[3], m[4], m[5]), (m[6], m[7], m[8])),
                               corners[k].tolist(), n)
            out[k] = (box, texture.im, warps)
        return out


@dataclass
class _Flats:
    """Flat-coloured vertical quads (far faces, small sign boards) of a position's
    views, projected together like :class:`_Quads`."""

    rows: list[tuple[float, ...]] = field(default_factory=list)

    def add(self, cam: _Camera, p: tuple[float, float], q: tuple[float, float], z0: float, z1: float) -> int:
        self.rows.append((p[0], p[1], q[0], q[1], z0, z1, *cam.right, *cam.fwd))
        return len(self.rows) - 1

    def project(self, cam: _Camera) -> list[list[float] | None]:
        """Per quad, its screen polygon (corners ``(p, z0), (q, z0), (q, z1), (p, z1)`` as a
        flat list), or ``None`` when it crosses the near plane and must be clipped."""
        if not self.rows:
            return []
        px, py, qx, qy, z0, z1, rx, ry, fx, fy = np.array(self.rows, dtype=float).T
        dpx, dpy, dqx, dqy = px - cam.x, py - cam.y, qx - cam.x, qy - cam.y
        lat_p, dep_p = dpx * rx + dpy * ry, dpx * fx + dpy * fy
        lat_q, dep_q = dqx * rx + dqy * ry, dqx * fx + dqy * fy
        ok = (dep_p >= NEAR) & (dep_q >= NEAR)
        f, cx, cy, h = cam.f, cam.cx, cam.cy, CAMERA_HEIGHT
        poly = np.empty((len(self.rows), 8))  # x, y of the four corners
        with np.errstate(divide="ignore", invalid="ignore"):
            poly[:, 0] = poly[:, 6] = cx + f * lat_p / dep_p
            poly[:, 2] = poly[:, 4] = cx + f * lat_q / dep_q
            poly[:, 1] = cy - f * (z0 - h) / dep_p
            poly[:, 3] = cy - f * (z0 - h) / dep_q
            poly[:, 5] = cy - f * (z1 - h) / dep_q
            poly[:, 7] = cy - f * (z1 - h) / dep_p
        return [row if good else None for row, good in zip(poly.tolist(), ok.tolist(), strict=True)]


# ---------------------------------------------------------------------------
# scene parts
# ---------------------------------------------------------------------------


#: Half-width of the region the road is kept in, as a multiple of depth: a
#: little wider than the field of view (whose half-width is 1 x depth).
WEDGE_SLOPE: float = 1.08


@dataclass(frozen=True)
class _Road:
    """The carriageway around a position as plain rings, shared by its four views.

    Attributes:
        xy: Vertices of all rings ``(n, 2)``, ring after ring, each closed
            (last vertex = first): the exteriors of the road pieces, then
            their holes (the city blocks between the streets).
        starts: Index in ``xy`` where each ring begins.
        ring: Ring index of each vertex.
        n_outer: Number of exterior rings (the first ones).
    """

    xy: np.ndarray
    starts: np.ndarray
    ring: np.ndarray
    n_outer: int


def _road_rings(road: shapely.Geometry) -> _Road:
    outer, holes = [], []
    for poly in getattr(road, "geoms", [road]):
        if poly.geom_type != "Polygon" or poly.is_empty:
            continue
        outer.append(np.asarray(poly.exterior.coords, dtype=float))
        holes.extend(np.asarray(ring.coords, dtype=float) for ring in poly.interiors)
    rings = outer + holes
    if not rings:
        return _Road(np.zeros((0, 2)), np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp), 0)
    sizes = [len(r) for r in rings]
    starts = np.cumsum([0, *sizes[:-1]]).astype(np.intp)
    return _Road(np.concatenate(rings), starts, np.repeat(np.arange(len(rings)), sizes), len(outer))


def _ground_polygons(cams: _Cameras, road: _Road) -> list[list[tuple[int, list[float]]]]:
    """Per view, the screen polygons (ring index, flat coordinate list) of the road's
    rings in view, clipped to the near plane.

    Rings wholly outside one side of the view's wedge (``|lateral| <=
    WEDGE_SLOPE * depth``) or beyond ``ROAD_DISTANCE`` are dropped; the
    others are clipped to ``depth >= NEAR`` in one vectorised
    Sutherland-Hodgman pass over all rings and views: a vertex in front is
    kept, and an edge crossing the plane adds its crossing point. Where a ring
    leaves several pieces they are joined along the near plane, far below the
    bottom of the view, so the joins are never seen; the rest of the screen
    clipping is Pillow's.
    """
    views = len(cams.cams)
    if len(road.xy) == 0:
        return [[] for _ in range(views)]
    lat, dep = cams.to_camera(road.xy)  # (views, n)
    near = NEAR * 1.01
    sides = np.stack([dep - near, lat + WEDGE_SLOPE * dep, WEDGE_SLOPE * dep - lat, ROAD_DISTANCE - dep])
    shown = ~(np.maximum.reduceat(sides, road.starts, axis=2) < 0.0).any(axis=0)  # (views, rings)
    n = lat.shape[1]
    inside = dep >= near
    cross = inside[:, :-1] != inside[:, 1:]
    cross[:, road.starts[1:] - 1] = False  # no edge from one ring's last vertex to the next ring's first
    # Slot 2i: vertex i; slot 2i + 1: where edge i -> i + 1 crosses the plane.
    slot_lat = np.repeat(lat, 2, axis=1)[:, :-1]
    slot_dep = np.repeat(dep, 2, axis=1)[:, :-1]
    v, i = np.nonzero(cross)
    t = (near - dep[v, i]) / (dep[v, i + 1] - dep[v, i])
    slot_lat[v, 2 * i + 1] = lat[v, i] + t * (lat[v, i + 1] - lat[v, i])
    slot_dep[v, 2 * i + 1] = near
    keep = np.empty((views, 2 * n - 1), dtype=bool)
    keep[:, 0::2] = inside
    keep[:, 1::2] = cross
    slot_ring = np.repeat(road.ring, 2)[:-1]
    keep &= shown[:, slot_ring]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = cams.cx + cams.f * slot_lat / slot_dep
        w = cams.cy + cams.f * CAMERA_HEIGHT / slot_dep
    uw = np.empty((*u.shape, 2))  # (views, slots, u/w): a view's kept slots flatten to x, y, x, y, ...
    uw[..., 0] = u
    uw[..., 1] = w
    any_outer = shown[:, :road.n_outer].any(axis=1).tolist()
    out = []
    for k in range(views):
        if not any_outer[k]:
            out.append([])
            continue
        sel = keep[k]
        out_ring = slot_ring[sel]
        if not len(out_ring):
            out.append([])
            continue
        flat = uw[k, sel].ravel().tolist()
        edges = [0, *(np.nonzero(out_ring[1:] != out_ring[:-1])[0] + 1).tolist(), len(out_ring)]
        ring_of = out_ring[edges[:-1]].tolist()
        out.append([(ring, flat[2 * a:2 * b]) for ring, a, b in zip(ring_of, edges[:-1], edges[1:], strict=True)
                    if b - a >= 3])
    return out


def _draw_road(canvas: Image.Image, draw: ImageDraw.ImageDraw, cam: _Camera, road: _Road,
               style: CityStyle, heading: float, polygons: list[tuple[int, list[float]]]) -> None:
    """Draw the carriageway and the blocks between its streets up to ``ROAD_DISTANCE`` ahead.

    Road pieces and blocks (holes in the road, filled with the ground colour)
    are clipped to the near plane only (see :func:`_ground_polygons`); the
    part beyond ``ROAD_DISTANCE`` (a sliver just under the horizon) is then
    put back to the background. That shows what clipping to the view's wedge
    (near plane, sides and far side) would, with a few numpy operations per
    view instead of a polygon intersection, and keeps every join of clipped
    pieces out of sight. ``polygons`` are the view's from :func:`_ground_polygons`.
    """
    if not polygons:
        return
    fill = _shaded(style.road, style.light)
    ground = _shaded(style.ground, style.light)
    for k, poly in polygons:  # exteriors come first, then the holes in them
        _fill_polygon(draw, poly, fill if k < road.n_outer else ground)
    # Rows from the horizon down to the far limit show the background again.
    top, bottom = int(math.floor(cam.cy)), int(math.floor(cam.cy + cam.f * CAMERA_HEIGHT / ROAD_DISTANCE))
    if bottom > top:
        start = _backdrop_start(cam.size, heading)
        band = _backdrop(style.name, cam.size).crop((start, top, start + cam.size, bottom))
        canvas.paste(band, (0, top))


def _marking_polygons(cams: _Cameras, quads: np.ndarray) -> list[list[list[float]]]:
    """Per view, the screen polygons (flat coordinate lists) of the road markings in front."""
    views = len(cams.cams)
    if len(quads) == 0:
        return [[] for _ in range(views)]
    lat, dep = cams.to_camera(quads)  # (views, m, 4)
    ok = (_min4(dep) > NEAR + 0.5) & (_min4(np.abs(lat)) < _max4(dep) * 1.1)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = cams.cx + cams.f * lat / dep
        v = cams.cy - cams.f * (0.0 - CAMERA_HEIGHT) / dep
    uv = np.stack([u, v], axis=3)
    return [uv[k, ok[k]].reshape(-1, 8).tolist() for k in range(views)]


def _draw_markings(draw: ImageDraw.ImageDraw, polygons: list[list[float]], style: CityStyle) -> None:
    fill, ink = draw.draw.draw_polygon, _ink(_shaded(style.marking, style.light))
    for poly in polygons:  # as _fill_polygon
        fill(poly, ink, 1)


_LEAVES = {"round": (62, 110, 50), "conifer": (40, 80, 56), "palm": (70, 130, 60)}


@lru_cache(maxsize=65536)
def _prop_colour(base, factor: float, style_name: str, metres: int):
    """``base`` shaded by ``factor`` and hazed at ``metres`` (see :func:`_haze_at`)."""
    return _haze_at(_shaded(base, factor), style_name, metres)


@lru_cache(maxsize=65536)
def _tree_inks(style_name: str, metres: int, leaf_shade: float) -> tuple[int, int]:
    """Inks of a tree's trunk and crown at ``metres``, its crown shaded by ``leaf_shade``
    (see :func:`_prop_colour`)."""
    style = STYLES[style_name]
    return (_ink(_prop_colour((88, 64, 44), style.light, style_name, metres)),
            _ink(_prop_colour(_LEAVES[style.trees], leaf_shade, style_name, metres)))


def _draw_tree(draw: ImageDraw.ImageDraw, cam: _Camera, lat: float, dep: float, style: CityStyle,
               dist: float, variant: float) -> None:
    """A tree of the style's kind (trunk, then crown), through Pillow's drawing core
    with memoised inks: the calls ``ImageDraw`` makes for ``rectangle``,
    ``ellipse``, ``polygon`` and ``line`` with a fill, without its per-call colour
    lookups (a view has dozens of trees and lamps)."""
    core = draw.draw
    f, cx, cy = cam.f, cam.cx, cam.cy
    s = f / dep
    x = cx + lat * s
    ground_y = cy + CAMERA_HEIGHT * s
    metres = min(int(dist), int(MAX_DISTANCE))
    trunk, leaves = _tree_inks(style.name, metres, round(style.light * (0.85 + 0.3 * variant), 2))
    if style.trees == "palm":
        top = ground_y - 7.5 * s
        core.draw_lines([(x, ground_y), (x + 0.4 * s, top)], trunk, max(1, int(0.3 * s)))
        for ang in range(0, 360, 45):
            rad = math.radians(ang + 20 * variant)
            dx, dy = math.cos(rad) * 2.4 * s, math.sin(rad) * 1.0 * s + 0.6 * s
            core.draw_lines([(x + 0.4 * s, top), (x + 0.4 * s + dx, top + dy)], leaves, max(1, int(0.35 * s)))
        return
    if style.trees == "conifer":
        core.draw_rectangle([x - 0.15 * s, ground_y - 1.2 * s, x + 0.15 * s, ground_y], trunk, 1)
        for k in range(3):
            base = ground_y - (1.0 + 1.6 * k) * s
            half = (1.8 - 0.45 * k) * s
            core.draw_polygon([(x - half, base), (x + half, base), (x, base - 2.6 * s)], leaves, 1)
        return
    core.draw_rectangle([x - 0.14 * s, ground_y - 3.0 * s, x + 0.14 * s, ground_y], trunk, 1)
    r = (1.9 + 0.6 * variant) * s
    core.draw_ellipse([x - r, ground_y - 4.8 * s - r, x + r, ground_y - 4.8 * s + r * 0.9], leaves, 1)


def _draw_lamp(draw: ImageDraw.ImageDraw, cam: _Camera, lat: float, dep: float, style: CityStyle,
               dist: float) -> None:
    """A lamp post of the style's kind, drawn like :func:`_draw_tree`."""
    core = draw.draw
    f, cx, cy = cam.f, cam.cx, cam.cy
    s = f / dep
    x = cx + lat * s
    ground_y = cy + CAMERA_HEIGHT * s
    pole = _ink(_prop_colour((50, 54, 58), style.light, style.name, min(int(dist), int(MAX_DISTANCE))))
    top = ground_y - 5.5 * s
    core.draw_lines([(x, ground_y), (x, top)], pole, max(1, int(0.14 * s)))
    head = _ink((255, 236, 180)) if style.lamp_glow else pole
    if style.lamp_glow:  # a halo behind the lamp head
        r = 0.45 * s
        cxh = x if style.lamp == "classic" else x + 0.9 * s
        core.draw_ellipse([cxh - r, top - 0.3 * s - r, cxh + r, top - 0.3 * s + r], _ink((150, 130, 90)), 1)
    if style.lamp == "classic":
        box = [x - 0.25 * s, top - 0.6 * s, x + 0.25 * s, top]
        core.draw_rectangle(box, head, 1)
        if pole != head:  # the outline
            core.draw_rectangle(box, pole, 0, 1)
    else:
        core.draw_lines([(x, top), (x + 0.9 * s, top)], pole, max(1, int(0.12 * s)))
        core.draw_ellipse([x + 0.6 * s, top - 0.1 * s, x + 1.2 * s, top + 0.2 * s], head, 1)


@dataclass(frozen=True)
class _CityFaces:
    """The faces of every building of a city under a style, as arrays ``(n, 4, ...)``
    (face ``k`` runs from footprint corner ``k`` to ``k + 1``, counter-clockwise).

    Attributes:
        corners: Footprint corners ``(n, 4, 2)``.
        heights: Drawn heights ``(n,)``.
        along: Unit direction of each face ``(n, 4, 2)``.
        width: Face widths ``(n, 4)``.
        colour: Flat colour of each face under the style's light.
        look: Texture key of each face (see :func:`facade_look`).
        sign: Whether the face carries its building's shop sign ``(n, 4)``.
        name: Place name of each building, or ``None``.
        sign_origin: Where each face's fascia sign starts ``(n, 4, 2)``.
        sign_width: Width of each face's fascia sign ``(n, 4)``.
        blade: Per face, the two sides of its blade sign as ``(start, direction)``
            pairs (empty when the style has none).
        board: Per building, the colour of its sign board drawn flat (too small
            to letter) under the style's light, or ``None`` without a place.

    Only the first four are numpy arrays (for the vectorised culling); the
    rest, and the ``*_list`` copies of those four, are nested Python lists for
    the drawing loop (reading single numpy elements is slow).
    """

    corners: np.ndarray
    heights: np.ndarray
    along: np.ndarray
    width: np.ndarray
    colour: list
    look: list
    sign: list
    name: list
    sign_origin: list
    sign_width: list
    blade: list
    board: list
    corners_list: list
    heights_list: list
    along_list: list
    width_list: list


@lru_cache(maxsize=32)
def _city_faces(city: City, style_name: str) -> _CityFaces:
    style = STYLES[style_name]
    n = len(city.buildings)
    corners = np.array([b.footprint for b in city.buildings], dtype=float).reshape(n, 4, 2)
    heights = np.array([building_height(b, style) for b in city.buildings], dtype=float)
    along = np.empty((n, 4, 2))
    width = np.empty((n, 4))
    sign_origin = np.empty((n, 4, 2))
    colour, look, blade = [], [], []
    bw = _blade_shape(style, "")[0] if style.sign.blade else 0.0
    for i, b in enumerate(city.buildings):
        wall = building_wall(b, style)
        colour.append([shade(wall, face_light(style, face_normal_bearing(b, k))) for k in range(4)])
        look.append([facade_look(b, k, style) for k in range(4)])
        sides = []
        for k in range(4):
            p, q = b.footprint[k], b.footprint[(k + 1) % 4]
            w = math.hypot(q[0] - p[0], q[1] - p[1])
            ax, ay = ((q[0] - p[0]) / w, (q[1] - p[1]) / w) if w > 1e-9 else (1.0, 0.0)
            nx, ny = ay, -ax  # outward normal (counter-clockwise footprints)
            inset = 0.07 * w
            along[i, k], width[i, k] = (ax, ay), w
            sign_origin[i, k] = (p[0] + ax * inset + nx * 0.06, p[1] + ay * inset + ny * 0.06)
            if not bw:
                sides.append(())
                continue
            foot = (p[0] + ax * 0.8 + nx * 0.3, p[1] + ay * 0.8 + ny * 0.3)
            tip = (foot[0] + nx * bw, foot[1] + ny * bw)
            sides.append(tuple((s, ((t[0] - s[0]) / bw, (t[1] - s[1]) / bw)) for s, t in ((foot, tip), (tip, foot))))
        blade.append(sides)
    sign = [[k in b.sign_faces for k in range(4)] for b in city.buildings]
    name = [city.places[b.place].name if b.place is not None else None for b in city.buildings]
    board = [None if n is None else _shaded(sign_colours(n, style.sign)[0], style.light) for n in name]
    return _CityFaces(corners, heights, along, width, colour, look, sign, name, sign_origin.tolist(),
                      (width - 2 * (0.07 * width)).tolist(), blade, board, corners.tolist(), heights.tolist(),
                      along.tolist(), width.tolist())


def _blade_shape(style: CityStyle, name: str) -> tuple[float, float, float]:
    """Width, bottom and top of a blade sign standing out of the facade near its left end."""
    bw, bz0 = (1.8, 3.0) if style.sign.blade == "horizontal" else (1.1, 3.0)
    bz1 = bz0 + (1.3 if style.sign.blade == "horizontal" else min(9.0, 0.55 * len(name) + 0.4))
    return bw, bz0, bz1


@dataclass(frozen=True)
class _FaceState:
    """What the camera position decides about the faces of the nearby buildings
    (aligned with :attr:`_Nearby.buildings`; nested lists, one row per building):
    which faces turn towards it, how near each is, and at what detail each face
    and its sign are drawn. None of it depends on the viewing direction.
    """

    front: list
    near: list
    textured: list
    level: list
    sign_textured: list
    sign_level: list
    letter_px: list


def _face_state(city: City, style_name: str, near: _Nearby, rows: list[int], position: tuple[float, float],
                size: int) -> _FaceState:
    """The face state of the nearby buildings ``rows`` (indices into :attr:`_Nearby.buildings`;
    the state's rows follow them)."""
    faces = _city_faces(city, style_name)
    b = near.buildings[rows]
    p, along, width = faces.corners[b], faces.along[b], faces.width[b]
    rx, ry = float(position[0]) - p[..., 0], float(position[1]) - p[..., 1]
    ax, ay = along[..., 0], along[..., 1]
    # Back-face culling: the outward normal of a counter-clockwise footprint is (ay, -ax).
    front = ((rx * ay - ry * ax) > 0.0) & (width >= 1e-6)
    t = np.maximum(0.0, np.minimum(width, rx * ax + ry * ay))
    dist = np.hypot(p[..., 0] + ax * t - float(position[0]), p[..., 1] + ay * t - float(position[1]))
    f = _Camera(position, 0.0, size).f
    ppm = f / np.maximum(dist, 1.0)
    textured = (dist <= TEXTURE_DISTANCE) & (ppm >= MIN_TEXTURE_PPM)
    level = texture_levels(FACADE_PPM, ppm * 0.85)
    z0, z1 = SIGN_BAND
    letter_px = (z1 - z0) * 0.6 * ppm
    sign_textured = ~((dist > TEXTURE_DISTANCE) | (letter_px < MIN_SIGN_PX))
    sign_level = texture_levels(SIGN_PPM, ppm)
    return _FaceState(front.tolist(), dist.tolist(), textured.tolist(), level.tolist(),
                      sign_textured.tolist(), sign_level.tolist(), letter_px.tolist())


@dataclass(frozen=True)
class _Nearby:
    """What lies within drawing range of a position, shared by its four views."""

    buildings: np.ndarray  # building indices
    distances: np.ndarray  # centroid distances
    markings: np.ndarray  # (m, 4, 2) marking quads
    prop_kind: np.ndarray  # 0 tree, 1 lamp
    prop_xy: np.ndarray  # (p, 2)
    prop_index: np.ndarray  # index into the style's props (for variation)
    road: _Road  # the road around the position (its cell's, see _cell_road)
    buildings_list: list[int]  # ``buildings`` as a list
    prop_kind_list: list[int]  # ``prop_kind`` as a list
    prop_index_list: list[int]  # ``prop_index`` as a list


#: Side of the square cells (metres) for which :func:`_cell_candidates` caches
#: what may lie in range of some position in the cell.
CELL: float = 40.0
#: Ranges of what :func:`_nearby` gathers around a position, metres.
MARKING_RANGE: float = 70.0
PROP_RANGE: float = 90.0


@lru_cache(maxsize=512)
def _cell_candidates(city: City, style_name: str, cell: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Indices (ascending) of the buildings, marking quads and props that can be in
    range of some position in ``cell``: everything within range of the cell's
    centre plus half its diagonal. :func:`_nearby` then tests only these."""
    cx, cy = (cell[0] + 0.5) * CELL, (cell[1] + 0.5) * CELL
    slack = CELL * math.sqrt(0.5)
    cents = city.building_centroids
    b = np.flatnonzero(np.hypot(cents[:, 0] - cx, cents[:, 1] - cy) < MAX_DISTANCE + city.building_radii + slack)
    quads = city.markings
    m = (np.flatnonzero(np.hypot(quads[:, 0, 0] - cx, quads[:, 0, 1] - cy) < MARKING_RANGE + slack)
         if len(quads) else np.zeros(0, dtype=np.intp))
    xy = _props(city, style_name).xy
    p = np.flatnonzero(np.hypot(xy[:, 0] - cx, xy[:, 1] - cy) < PROP_RANGE + slack) if len(xy) else np.zeros(0, dtype=np.intp)
    return b, cents[b], city.building_radii[b], m, quads[m] if len(quads) else quads, p, xy[p]


#: How far from the camera the road drawn can reach: the far corners of the
#: region the road is kept in (see :func:`_ground_polygons`).
ROAD_REACH: float = ROAD_DISTANCE * math.hypot(1.0, WEDGE_SLOPE)


@lru_cache(maxsize=512)
def _cell_road(city: City, cell: tuple[int, int]) -> _Road:
    """The road around every position in ``cell``: the city's road area clipped to the
    cell grown by :data:`ROAD_REACH`, as rings (one clip per cell, not per view)."""
    r = ROAD_REACH
    x0, y0 = cell[0] * CELL, cell[1] * CELL
    return _road_rings(shapely.clip_by_rect(city.road_area, x0 - r, y0 - r, x0 + CELL + r, y0 + CELL + r))


def _nearby(city: City, style_name: str, position: tuple[float, float]) -> _Nearby:
    x, y = position
    cell = (math.floor(x / CELL), math.floor(y / CELL))
    b, cents, radii, m, quads, p, pxy = _cell_candidates(city, style_name, cell)
    dist = np.hypot(cents[:, 0] - x, cents[:, 1] - y)
    near_b = dist < MAX_DISTANCE + radii
    bidx = b[near_b]
    mq = quads[np.hypot(quads[:, 0, 0] - x, quads[:, 0, 1] - y) < MARKING_RANGE] if len(quads) else quads
    props = _props(city, style_name)
    pidx = p[np.hypot(pxy[:, 0] - x, pxy[:, 1] - y) < PROP_RANGE] if len(pxy) else np.zeros(0, dtype=np.intp)
    road = _cell_road(city, cell)
    return _Nearby(bidx, dist[near_b], mq, props.kind[pidx], props.xy[pidx], pidx, road, bidx.tolist(),
                   props.kind[pidx].tolist(), pidx.tolist())


def _visible_buildings(cams: _Cameras, city: City, style: CityStyle, near: _Nearby) -> list[list[int]]:
    """Per view, the buildings in it not hidden behind nearer ones (indices into
    :attr:`_Nearby.buildings`).

    A building is hidden when, across its whole screen width, some set of
    buildings lying entirely in front of it (every corner nearer than its
    nearest corner) covers it from above its highest roof point down to the
    ground. Boxes standing on the ground cannot peek out then, so skipping it
    changes no pixel; it only saves the drawing.
    """
    views = len(cams.cams)
    cand = near.buildings
    if len(cand) == 0:
        return [[] for _ in range(views)]
    faces = _city_faces(city, style.name)
    radii = city.building_radii[cand]
    lat_c, dep_c = cams.to_camera(city.building_centroids[cand])  # (views, n)
    in_view = (dep_c > -radii) & (np.abs(lat_c) < dep_c * 1.05 + radii * 1.5)
    lat, dep = cams.to_camera(faces.corners[cand])  # (views, n, 4)
    min_dep, max_dep = _min4(dep), _max4(dep)
    solid = min_dep > NEAR  # wholly in front: can be projected and occlude
    safe_dep = np.where(dep > NEAR, dep, 1.0)
    u = cams.cx + cams.f * lat / safe_dep
    top = cams.cy - cams.f * (faces.heights[cand, None] - CAMERA_HEIGHT) / safe_dep
    x0 = np.minimum(np.maximum(_min4(u), 0), cams.size)
    x1 = np.minimum(np.maximum(_max4(u), 0), cams.size)
    hi_top, lo_top = _min4(top), _max4(top)
    # Per view, the candidates in it nearest first (the others sort last and are
    # cut off); everything goes to Python lists once for all views.
    orders = np.argsort(np.where(in_view, min_dep, np.inf), axis=1, kind="stable").tolist()
    counts = in_view.sum(axis=1).tolist()
    columns = (min_dep.tolist(), max_dep.tolist(), solid.tolist(), x0.tolist(), x1.tolist(),
               hi_top.tolist(), lo_top.tolist())
    out = []
    for view in range(views):
        mins, maxs, solids, lefts, rights, his, los = (c[view] for c in columns)
        visible = []
        # Occluders so far (visible, solid, on screen), kept sorted by their left end:
        # (x0, x1, max depth, lowest roof point).
        occluders: list[tuple[float, float, float, float]] = []
        for k in orders[view][:counts[view]]:
            if not solids[k]:
                visible.append(k)
                continue
            if rights[k] - lefts[k] < 0.5:
                continue  # off screen
            if occluders and _covered(lefts[k], rights[k], mins[k], his[k], occluders):
                continue
            visible.append(k)
            bisect.insort(occluders, (lefts[k], rights[k], maxs[k], los[k]))
        out.append(visible)
    return out


def _covered(a: float, b: float, depth: float, top: float,
             occluders: list[tuple[float, float, float, float]]) -> bool:
    """Whether the ``occluders`` (sorted by left end) lying wholly in front of ``depth``
    and reaching above ``top`` cover ``[a, b]`` with no gap over half a pixel."""
    reach = a
    for s0, s1, d, lt in occluders:
        if s0 > reach + 0.5:
            break  # a gap: later spans start further right still
        if d <= depth and lt <= top and s1 > reach:
            reach = s1
            if reach >= b - 0.5:
                return True
    return reach >= b - 0.5


def render_view(city: City, style_name: str, position: tuple[float, float], heading: float,
                size: int, *, view: int = 0, record: list[SignRecord] | None = None) -> Image.Image:
    """One perspective view from ``position`` looking along ``heading``.

    Args:
        city: The city to draw.
        style_name: A key of :data:`~gym_virl.render.styles.STYLES`.
        position: Camera ground position, metres east-north.
        heading: Viewing bearing, degrees.
        size: Width and height in pixels.
        view: Index recorded in ``record`` entries.
        record: If given, a :class:`SignRecord` is appended for every shop
            sign drawn with readable lettering.
    """
    return _render_position(city, style_name, position, [heading], size, [view], record)[0]


def _render_position(city: City, style_name: str, position: tuple[float, float], headings: list[float],
                     size: int, indices: list[int], record: list[SignRecord] | None) -> list[Image.Image]:
    """The views from ``position`` along ``headings`` (recorded as views ``indices``).

    What the views share is done once for all of them: finding what lies
    around the position; putting the points of the road, markings, buildings
    and props into every view's camera frame (one numpy operation each);
    culling, distances and detail levels of building faces (which do not
    depend on the viewing direction); projecting every textured and flat quad.
    Each view then draws its background, road and markings, and the
    buildings, signs, trees and lamps far to near from its drawing list.
    """
    style = STYLES[style_name]
    near = _nearby(city, style_name, position)
    cams = _Cameras([_Camera(position, h, size) for h in headings])
    roads = _ground_polygons(cams, near.road)
    markings = _marking_polygons(cams, near.markings)
    shown_all = _visible_buildings(cams, city, style, near)
    rows = sorted({k for shown in shown_all for k in shown})
    state = _face_state(city, style_name, near, rows, position, size)
    row_of = {k: r for r, k in enumerate(rows)}
    # Per view, the trees and lamps in it as drawing items (dist, kind, index, lat, dep).
    props: list[list[tuple]] = [[] for _ in headings]
    if len(near.prop_xy):
        plat, pdep = cams.to_camera(near.prop_xy)
        view_of, i_of = np.nonzero((pdep > 0.8) & (np.abs(plat) < pdep * 1.05 + 3.0))
        kinds, prop_ids = near.prop_kind_list, near.prop_index_list
        for v, i, d, la, de in zip(view_of.tolist(), i_of.tolist(), np.hypot(plat, pdep)[view_of, i_of].tolist(),
                                   plat[view_of, i_of].tolist(), pdep[view_of, i_of].tolist(), strict=True):
            props[v].append((d, 1 + kinds[i], prop_ids[i], la, de))
    distances = near.distances.tolist()
    quads, flats = _Quads(), _Flats()
    views = []
    for v, (cam, heading) in enumerate(zip(cams.cams, headings, strict=True)):
        canvas = _background(style_name, size, heading)
        draw = ImageDraw.Draw(canvas)
        _draw_road(canvas, draw, cam, near.road, style, heading, roads[v])
        _draw_markings(draw, markings[v], style)
        items = [(distances[k], 0, k, 0.0, 0.0) for k in shown_all[v]]  # (dist, kind, index, lat, dep)
        items += props[v]
        items.sort(key=lambda it: -it[0])
        ops = _list_ops(cam, city, style, near, state, row_of, items, quads, flats)
        views.append((canvas, draw, cam, ops))
    projected = quads.project(cams.cams[0])
    polygons = flats.project(cams.cams[0])
    for (canvas, draw, cam, ops), view in zip(views, indices, strict=True):
        _run_ops(canvas, draw, cam, style, ops, projected, polygons, view, record)
    return [v[0] for v in views]


# Drawing operations of a view, in painter's order (see :func:`_list_ops`).
_WALL, _FLAT, _SIGN, _TREE, _LAMP = range(5)


def _list_ops(cam: _Camera, city: City, style: CityStyle, near: _Nearby,
              state: _FaceState, row_of: dict[int, int], items: list, quads: _Quads,
              flats: _Flats) -> list[tuple]:
    """The drawing operations of a view in painter's order, and the quads they warp.

    A building draws its faces turned towards the camera in footprint order:
    near faces textured (``_WALL``), far ones in a flat colour (``_FLAT``),
    each followed by its shop sign, if any: a fascia board on the face
    (textured, or flat when too small to read) and, in some styles, a blade
    sign standing out of it. A textured face whose quad misses the screen
    draws no sign (a ``_SIGN`` names the quad it depends on). Flat quads
    carry the drawing-core ink of their colour (see :func:`_hazed_ink`).
    """
    faces = _city_faces(city, style.name)
    ops: list[tuple] = []
    append = ops.append
    add_quad, add_flat, hazed_ink = quads.add, flats.add, _hazed_ink
    z0s, z1s = SIGN_BAND
    sname, far = style.name, int(MAX_DISTANCE)
    blade = style.sign.blade
    buildings = near.buildings_list
    for d, kind, idx, lat, dep in items:
        if kind == 1:
            append((_TREE, lat, dep, d, (idx * 0.618) % 1.0))
            continue
        if kind == 2:
            append((_LAMP, lat, dep, d))
            continue
        bid = buildings[idx]  # a building: idx indexes near.buildings
        j = row_of[idx]  # its row of the face state
        height, name = faces.heights_list[bid], faces.name[bid]
        front, dist, textured = state.front[j], state.near[j], state.textured[j]
        corners, alongs, widths = faces.corners_list[bid], faces.along_list[bid], faces.width_list[bid]
        metres = min(int(d), far)
        for k in range(4):
            if not front[k]:
                continue
            p, along, width = corners[k], alongs[k], widths[k]
            gate = -1
            if textured[k]:
                look, level = faces.look[bid][k], state.level[j][k]
                gate = add_quad(cam, p, along, width, 0.0, height,
                                look_texture_size(sname, look[2], look[3], level), look_texture, (*look, level))
                append((_WALL, gate))
            else:
                q = corners[(k + 1) % 4]
                append((_FLAT, add_flat(cam, p, q, 0.0, height), p, q, 0.0, height,
                        hazed_ink(faces.colour[bid][k], sname, metres), -1))
            if name is None or not faces.sign[bid][k]:
                continue
            origin, sign_w = faces.sign_origin[bid][k], faces.sign_width[bid][k]
            if not state.sign_textured[j][k]:
                end = (origin[0] + along[0] * sign_w, origin[1] + along[1] * sign_w)
                append((_FLAT, add_flat(cam, origin, end, z0s, z1s), origin, end, z0s, z1s,
                        hazed_ink(faces.board[bid], sname, min(int(dist[k]), far)), gate))
                continue
            level = state.sign_level[j][k]
            letter_px = state.letter_px[j][k]
            board_w, board_h = round(sign_w, 2), round(z1s - z0s, 2)
            append((_SIGN, add_quad(cam, origin, along, sign_w, z0s, z1s,
                                    sign_texture_size(board_w, board_h, level), sign_texture,
                                    (name, sname, board_w, board_h, False, level)),
                    gate, name, letter_px))
            if blade is None:
                continue
            # A blade sign near the face's left end, readable from both
            # directions along the street: one textured quad per side.
            bw, bz0, bz1 = _blade_shape(style, name)
            blade_key = (name, sname, bw, round(bz1 - bz0, 2), blade == "vertical", level)
            blade_size = sign_texture_size(bw, blade_key[3], level)
            for start, direction in faces.blade[bid][k]:
                ex, ey = direction
                if (cam.x - start[0]) * ey - (cam.y - start[1]) * ex <= 0.0:
                    continue
                append((_SIGN, add_quad(cam, start, direction, bw, bz0, bz1, blade_size, sign_texture,
                                        blade_key), gate, name, letter_px * 0.8))
    return ops


def _run_ops(canvas: Image.Image, draw: ImageDraw.ImageDraw, cam: _Camera, style: CityStyle,
             ops: list[tuple], projected: list, polygons: list, view: int,
             record: list[SignRecord] | None) -> None:
    """Execute the operations of :func:`_list_ops` with their quads and flat quads projected.

    Warps and polygon fills go straight to Pillow's cores (as :func:`_warp_into`
    and :func:`_fill_polygon` do): a view runs a couple of hundred of them.
    """
    core, fill = canvas.im, draw.draw.draw_polygon
    nearest, bilinear = Image.Resampling.NEAREST, Image.Resampling.BILINEAR  # walls, signs
    for op in ops:
        kind = op[0]
        if kind == _WALL:
            quad = projected[op[1]]
            if quad is not None:
                texture = quad[1]
                for box, method, coeffs in quad[2]:
                    core.transform(box, texture, method, coeffs, nearest, 0)
        elif kind == _FLAT:
            if op[7] >= 0 and projected[op[7]] is None:
                continue  # the sign of a textured face that missed the screen
            poly = polygons[op[1]]
            if poly is not None:
                fill(poly, op[6], 1)
            else:  # it crosses the near plane
                _flat_quad(draw, cam, op[2], op[3], op[4], op[5], op[6])
        elif kind == _SIGN:
            if op[2] >= 0 and projected[op[2]] is None:
                continue
            quad = projected[op[1]]
            if quad is None:
                continue
            texture = quad[1]
            for box, method, coeffs in quad[2]:
                core.transform(box, texture, method, coeffs, bilinear, 0)
            if record is not None:
                record.append(SignRecord(op[3], view, quad[0], op[4]))
        elif kind == _TREE:
            _draw_tree(draw, cam, op[1], op[2], style, op[3], op[4])
        else:
            _draw_lamp(draw, cam, op[1], op[2], style, op[3])


def views_to_grid(views: list[Image.Image] | list[np.ndarray]) -> np.ndarray:
    """Combine four square views (front, right, back, left) into the 2x2 grid array."""
    first = views[0]
    size = first.size[1] if isinstance(first, Image.Image) else first.shape[0]
    gap = grid_gap(size)
    out = np.empty(grid_shape(size), dtype=np.uint8)
    out[size:size + gap] = 0
    out[:, size:size + gap] = 0
    for k, view in enumerate(views):
        r, c = divmod(k, 2)
        out[r * (size + gap) : r * (size + gap) + size, c * (size + gap) : c * (size + gap) + size] = (
            np.asarray(view)[..., :3]
        )
    return out


def render_views(city: City, style_name: str, position: tuple[float, float], heading: float,
                 size: int = 640, *, record: list[SignRecord] | None = None) -> np.ndarray:
    """The 2x2 grid of front / right / back / left views as a ``uint8`` array.

    Shape is :func:`grid_shape` ``(size)``. ``record``, if given, collects the
    signs drawn (see :func:`render_view`).
    """
    headings = [(heading + off) % 360.0 for off in VIEW_OFFSETS]
    return views_to_grid(_render_position(city, style_name, position, headings, size,
                                          list(range(len(headings))), record))
