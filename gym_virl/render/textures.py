"""Facade and sign textures, drawn once and cached.

Textures are pure functions of everything that changes their pixels (city,
building, face, style, detail level; or sign text, style and size) and are
kept in LRU caches, like Minigrid's tiles: a street view reuses the
textures of the buildings it saw one step earlier.

Facade textures are drawn at :data:`FACADE_PPM` pixels per metre; signs at
:data:`SIGN_PPM`, so that shop names stay sharp in a 640-pixel view. Each
has coarser levels (half the resolution per level) for buildings far away,
which keeps nearest-neighbour sampling from shimmering.
"""

from __future__ import annotations

import math
import numbers
import zlib
from collections import OrderedDict
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from gengym_core.fonts import font
from gym_virl.city.generate import Building, city_for_seed
from gym_virl.geometry import bearing
from gym_virl.render.styles import RGB, STYLES, CityStyle, SignStyle

#: Facade texture resolution at level 0, pixels per metre.
FACADE_PPM: float = 14.0
#: Sign texture resolution at level 0, pixels per metre.
SIGN_PPM: float = 44.0
#: Height of the ground floor (shop floor), metres.
GROUND_FLOOR: float = 5.0
#: Bottom and top of the fascia sign band, metres above the street.
SIGN_BAND: tuple[float, float] = (3.25, 4.75)
#: Height of the parapet above the top floor.
PARAPET: float = 0.7


class _ByteBudgetCache:
    """An LRU cache of images bounded by their total size in bytes, not their count.

    Facade textures range from a few hundred bytes (far levels) to a few
    hundred kilobytes; a count-bounded cache either thrashes or grows large.
    """

    def __init__(self, fn, max_bytes: int) -> None:
        self.fn = fn
        self.max_bytes = max_bytes
        self.items: OrderedDict = OrderedDict()
        self.bytes = 0
        self.misses = 0
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *key):  # positional arguments only: they are the cache key
        hit = self.items.get(key)
        if hit is not None:
            self.items.move_to_end(key)
            return hit
        self.misses += 1
        value = self.fn(*key)
        self.items[key] = value
        self.bytes += _image_bytes(value)
        self._evict()
        return value

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.bytes -= _image_bytes(old)

    def resize(self, max_bytes: int) -> None:
        """Set the budget, dropping the least recently used images beyond it."""
        self.max_bytes = int(max_bytes)
        self._evict()

    def cache_clear(self) -> None:
        self.items.clear()
        self.bytes = 0


def _image_bytes(img: Image.Image) -> int:
    """Memory an image's pixels take: Pillow keeps multi-band pixels in four bytes (RGB too)."""
    return img.size[0] * img.size[1] * (1 if len(img.getbands()) == 1 else 4)


def byte_budget_cache(max_bytes: int):
    """Decorator: cache a function returning PIL images within ``max_bytes``."""
    return lambda fn: _ByteBudgetCache(fn, max_bytes)


def stable_seed(*parts: object) -> int:
    """A seed from text parts that is the same in every process (unlike ``hash``)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def shade(colour: RGB, factor: float) -> RGB:
    """``colour`` scaled by ``factor``, clipped to 0..255."""
    return tuple(int(max(0, min(255, round(c * factor)))) for c in colour)  # type: ignore[return-value]


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Linear blend from ``a`` (t=0) to ``b`` (t=1)."""
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


SUN_BEARING = {"day": 150.0, "golden": 250.0, "dusk": 270.0, "overcast": 180.0, "night": 0.0}


def face_light(style: CityStyle, normal_bearing: float) -> float:
    """Brightness of a wall facing ``normal_bearing`` under the style's light."""
    direct = 0.12 if style.time_of_day in ("overcast", "night") else 0.32
    cos = math.cos(math.radians(normal_bearing - SUN_BEARING[style.time_of_day]))
    return style.light * (0.74 + direct * max(0.0, cos) - 0.06 * max(0.0, -cos))


def building_height(building: Building, style: CityStyle) -> float:
    """Height of ``building`` in metres as ``style`` draws it."""
    floors = max(1, int(round(building.floors * style.floors_scale)))
    return GROUND_FLOOR + (floors - 1) * style.floor_height + PARAPET


def building_wall(building: Building, style: CityStyle) -> RGB:
    """The facade colour ``style`` gives ``building``."""
    return style.walls[int(building.variant * len(style.walls)) % len(style.walls)]


def face_normal_bearing(building: Building, face: int) -> float:
    """Bearing of the outward normal of ``face`` (footprint corners are counter-clockwise)."""
    p = building.footprint[face]
    q = building.footprint[(face + 1) % len(building.footprint)]
    dx, dy = q[0] - p[0], q[1] - p[1]
    return bearing(dy, -dx)


_WINDOW_SIZES = {"grid": (1.3, 1.5), "tall": (1.0, 2.1), "arched": (1.1, 1.8)}


def _window_boxes(style: CityStyle, width_m: float, ppm: float) -> list[tuple[float, float, float, float]]:
    """Window rectangles ``(x0, y0, x1, y1)`` of one upper floor, in pixels from the
    floor strip's top-left corner."""
    fh = style.floor_height * ppm
    if style.window_shape == "ribbon":
        return [(0.05 * width_m * ppm, fh - 2.4 * ppm, 0.95 * width_m * ppm, fh - 0.9 * ppm)]
    w, h = _WINDOW_SIZES[style.window_shape]
    cols = max(1, int(width_m // 3.1))
    boxes = []
    for c in range(cols):
        cx = (c + 0.5) * width_m / cols
        y1 = fh - 0.8 * ppm
        boxes.append(((cx - w / 2) * ppm, y1 - h * ppm, (cx + w / 2) * ppm, y1))
    return boxes


def _floor_strip(style: CityStyle, width_m: float, ppm: float) -> Image.Image:
    """One upper floor as colour roles (see :func:`look_texture`): wall with its row of windows."""
    w_px = max(2, int(round(width_m * ppm)))
    h_px = max(1, int(round(style.floor_height * ppm)))
    strip = Image.new("L", (w_px, h_px), _WALL)
    draw = ImageDraw.Draw(strip)
    for x0, y0, x1, y1 in _window_boxes(style, width_m, ppm):
        _draw_window(draw, style, (x0, y0, x1, y1), _GLASS_UP, _TRIM, ppm)
    return strip


def _draw_window(draw: ImageDraw.ImageDraw, style: CityStyle, box: tuple[float, float, float, float],
                 colour: int, frame: int, ppm: float) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle([x0, y0, x1, y1], fill=colour)
    if style.window_shape == "arched":
        r = (x1 - x0) / 2
        draw.pieslice([x0, y0 - r, x1, y0 + r], 180, 360, fill=colour)
    if ppm >= 6:
        draw.rectangle([x0, y0, x1, y1], outline=frame, width=max(1, int(ppm * 0.12)))
        draw.line([x0, y1, x1, y1], fill=frame, width=max(1, int(ppm * 0.15)))


#: Memory budget of the facade texture cache, per process (see
#: :func:`set_texture_cache_budget`). The facades of one city at 256-pixel
#: views take about 330 MB at the levels they are seen at; with 256 MB an env
#: draws about 2.5 new facade textures a step there (0.12 ms), with 160 MB 7.5
#: (0.32 ms, 6% of a step).
FACADE_CACHE_BYTES: int = 256 * 2**20
#: Memory budget of the sign texture cache, per process.
SIGN_CACHE_BYTES: int = 48 * 2**20


#: Facade widths are quantised to this step (metres) so that look-alike
#: faces share one texture; the texture is stretched to the exact width.
WIDTH_STEP: float = 1.0


def facade_look(building: Building, face: int, style: CityStyle) -> tuple:
    """The appearance key of a face: everything its texture depends on.

    Faces with the same key look the same (same wall colour, width to
    :data:`WIDTH_STEP`, storeys, shop front or not, awning, door position,
    light, lit-window pattern), so they share one cached texture.
    """
    p = building.footprint[face]
    q = building.footprint[(face + 1) % len(building.footprint)]
    width_q = max(1, int(round(math.hypot(q[0] - p[0], q[1] - p[1]) / WIDTH_STEP)))
    floors = max(1, int(round(building.floors * style.floors_scale)))
    wall_idx = int(building.variant * len(style.walls)) % len(style.walls)
    shop = face in building.sign_faces
    # Details follow from the quantised size, so that look-alikes really coincide.
    awning = (wall_idx + width_q) % len(style.awnings) if (
        shop and style.awnings and (width_q + floors) % 3 != 0) else -1
    door = (width_q + floors) % 5
    light = round(face_light(style, face_normal_bearing(building, face)), 2)
    lit = (wall_idx + face) % 2 if style.window_lit is not None else 0
    return (style.name, wall_idx, floors, width_q, shop, awning, door, light, lit)


def facade_texture(city_seed: int, city_config: object, building_id: int, face: int,
                   style_name: str, level: int) -> Image.Image:
    """The RGB texture of one face of one building (see :func:`look_texture`)."""
    b = city_for_seed(city_seed, city_config).buildings[building_id]
    return look_texture(*facade_look(b, face, STYLES[style_name]), level)


#: Colour roles of facade pixels. A facade is drawn once as a map of these
#: roles (independent of wall colour and light) and coloured per look by a
#: palette, which gives the same pixels as drawing in colour at a fraction
#: of the cost of drawing.
_WALL, _TRIM, _GLASS_UP, _LIT, _GLASS, _SHOP_DOOR, _HOUSE_DOOR, _AWNING, _AWNING_STRIPE, _PLINTH = range(10)
#: Memory budget of the cache of facade role maps (one byte per pixel).
FACADE_ROLES_CACHE_BYTES: int = 48 * 2**20


@lru_cache(maxsize=8192)
def look_texture_size(style_name: str, floors: int, width_q: int, level: int) -> tuple[int, int]:
    """Pixel size of :func:`look_texture` for a look with these storeys and width (without
    drawing it: a renderer can tell where a face lands before paying for its texture)."""
    style = STYLES[style_name]
    height_m = GROUND_FLOOR + (floors - 1) * style.floor_height + PARAPET
    ppm = FACADE_PPM / (2**level)
    return max(2, int(round(width_q * WIDTH_STEP * ppm))), max(2, int(round(height_m * ppm)))


@byte_budget_cache(FACADE_ROLES_CACHE_BYTES)
def _look_roles(style_name: str, floors: int, width_q: int, is_shop: bool, awning: bool, door: int,
                lit: int, level: int) -> Image.Image:
    """The facade of a look as an ``"L"`` image of colour roles (see :func:`look_texture`)."""
    style = STYLES[style_name]
    width_m = width_q * WIDTH_STEP
    ppm = FACADE_PPM / (2**level)
    w_px, h_px = look_texture_size(style_name, floors, width_q, level)
    img = Image.new("L", (w_px, h_px), _WALL)
    draw = ImageDraw.Draw(img)
    rng = np.random.default_rng(stable_seed(style_name, "lit", lit, width_q, floors))
    # Parapet / cornice.
    draw.rectangle([0, 0, w_px, max(1, int(0.35 * ppm))], fill=_TRIM)
    # Upper floors: one strip drawn once and pasted per storey; lit windows
    # (night styles) painted over it.
    strip = _floor_strip(style, width_m, ppm)
    boxes = _window_boxes(style, width_m, ppm)
    for k in range(1, floors):
        top = int(round(h_px - (GROUND_FLOOR + k * style.floor_height) * ppm))
        img.paste(strip, (0, top))
        if style.window_lit is not None:
            for x0, y0, x1, y1 in boxes:
                if rng.random() < 0.45:
                    _draw_window(draw, style, (x0, y0 + top, x1, y1 + top), _LIT, _TRIM, ppm)
    # Band between shop floor and the floors above.
    band_y = h_px - GROUND_FLOOR * ppm
    draw.rectangle([0, band_y - 0.18 * ppm, w_px, band_y + 0.05 * ppm], fill=_TRIM)
    if is_shop:
        x0, x1 = 0.06 * width_m * ppm, 0.94 * width_m * ppm
        y_top = h_px - 3.0 * ppm
        y_bot = h_px - 0.25 * ppm
        draw.rectangle([x0, y_top, x1, y_bot], fill=_GLASS, outline=_TRIM, width=max(1, int(0.15 * ppm)))
        door_w = 1.2 * ppm
        dx = x0 + (x1 - x0) * (0.2 + 0.15 * door)
        draw.rectangle([dx - door_w / 2, y_top + 0.3 * ppm, dx + door_w / 2, h_px], fill=_SHOP_DOOR)
        mullions = max(1, int((x1 - x0) / (2.2 * ppm)))
        for m in range(1, mullions):
            mx = x0 + (x1 - x0) * m / mullions
            draw.line([mx, y_top, mx, y_bot], fill=_TRIM, width=max(1, int(0.08 * ppm)))
        if awning:
            draw.rectangle([x0 - 0.1 * ppm, h_px - 3.25 * ppm, x1 + 0.1 * ppm, h_px - 2.75 * ppm], fill=_AWNING)
            stripes = max(2, int((x1 - x0) / (0.6 * ppm)))
            for k in range(0, stripes, 2):
                sx = x0 + (x1 - x0) * k / stripes
                draw.rectangle([sx, h_px - 3.25 * ppm, sx + (x1 - x0) / stripes, h_px - 2.75 * ppm],
                               fill=_AWNING_STRIPE)
    else:
        # A residential ground floor: a door and two windows.
        cx = width_m * ppm * (0.25 + 0.125 * door)
        draw.rectangle([cx - 0.6 * ppm, h_px - 2.4 * ppm, cx + 0.6 * ppm, h_px], fill=_HOUSE_DOOR)
        for off in (-2.4, 2.4):
            wx = cx + off * ppm
            if 0.5 * ppm < wx < (width_m - 0.5) * ppm:
                draw.rectangle([wx - 0.6 * ppm, h_px - 2.8 * ppm, wx + 0.6 * ppm, h_px - 1.2 * ppm],
                               fill=_GLASS, outline=_TRIM)
    # A plinth.
    draw.rectangle([0, h_px - 0.25 * ppm, w_px, h_px], fill=_PLINTH)
    return img


@lru_cache(maxsize=4096)
def _look_palette(style_name: str, wall_idx: int, awning_idx: int, light: float) -> bytes:
    """The colours of the facade roles for a wall colour, awning and light."""
    style = STYLES[style_name]
    wall = shade(style.walls[wall_idx], light)
    trim = shade(style.trim, light)
    glass = shade(mix(style.window, (200, 210, 220), 0.25), light)
    if style.window_lit is not None:
        glass = mix(glass, style.window_lit, 0.55)
    awning = shade(style.awnings[awning_idx], light) if awning_idx >= 0 else wall
    colours = {
        _WALL: wall,
        _TRIM: trim,
        _GLASS_UP: shade(style.window, light),
        _LIT: style.window_lit or wall,
        _GLASS: glass,
        _SHOP_DOOR: shade(wall, 0.45),
        _HOUSE_DOOR: shade(wall, 0.4),
        _AWNING: awning,
        _AWNING_STRIPE: shade(awning, 0.8),
        _PLINTH: shade(wall, 0.7),
    }
    return bytes(c for role in range(len(colours)) for c in colours[role])


@byte_budget_cache(FACADE_CACHE_BYTES)
def look_texture(style_name: str, wall_idx: int, floors: int, width_q: int, is_shop: bool,
                 awning_idx: int, door: int, light: float, lit: int, level: int) -> Image.Image:
    """The RGB texture of a face with the given look (see :func:`facade_look`).

    The texture spans the whole face: its width and full height, at
    ``FACADE_PPM / 2**level`` pixels per metre. Shop fronts get glass, a
    door and maybe an awning; the sign itself is a separate quad (see
    :func:`sign_texture`). The layout is drawn once per shape as colour
    roles (:func:`_look_roles`) and coloured here.
    """
    roles = _look_roles(style_name, floors, width_q, is_shop, awning_idx >= 0, door, lit, level)
    img = roles.copy()
    img.putpalette(_look_palette(style_name, wall_idx, awning_idx, light))
    return img.convert("RGB")


def cased(text: str, sign: SignStyle) -> str:
    """``text`` in the sign style's letter case."""
    if sign.case == "upper":
        return text.upper()
    if sign.case == "title":
        return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))
    return text


def sign_colours(name: str, sign: SignStyle) -> tuple[RGB, RGB]:
    """Board and letter colours of the sign of ``name`` (stable per name)."""
    k = stable_seed(name) % len(sign.boards)
    return sign.boards[k], sign.letters[k % len(sign.letters)]


@lru_cache(maxsize=16384)
def _advance(size: int, char: str) -> float:
    """Advance width of one letter at ``size`` (memoised: sign layouts measure letter by letter)."""
    return font(size).getlength(char)


@lru_cache(maxsize=8192)
def _glyph(size: int, stroke: int, char: str, start: tuple[float, float]):
    """One letter's coverage mask as Pillow renders it inside a line: the image core
    and its offset from the pen, for ``start``, the fractional part of where the line
    is drawn (FreeType shifts the outline by it), or ``None`` for a letter with no
    pixels (a space)."""
    core, offset = font(size).getmask2(char, "L", stroke_width=stroke, anchor="la", start=start,
                                       stroke_filled=True)
    return (core, offset) if core.size[0] and core.size[1] else None


def _line_mask(text: str, size: int, stroke: int, start: tuple[float, float]):
    """``font(size).getmask2(text, "L", stroke_width=stroke, start=start)`` made of cached letters.

    Pillow renders a line letter by letter at whole-pixel pen positions (this
    font has whole-pixel advances and no kerning) and lays each letter over
    the ones before it with the same rounding as an ``"L"`` paste of white
    through the letter's mask; doing that from :func:`_glyph` gives the same
    mask without asking FreeType for each letter of every sign again.
    ``tests/test_virl_render.py`` checks the masks are equal. Returns the mask
    core and its offset, or ``None`` when nothing is inked.
    """
    placed = []
    pen = 0.0
    for char in text:
        glyph = _glyph(size, stroke, char, start)
        if glyph is not None:
            core, (ox, oy) = glyph
            placed.append((core, int(round(pen)) + ox, oy))
        pen += _advance(size, char)
    if not placed:
        return None
    x0 = min(x for _, x, _ in placed)
    y0 = min(y for _, _, y in placed)
    x1 = max(x + core.size[0] for core, x, _ in placed)
    y1 = max(y + core.size[1] for core, _, y in placed)
    mask = Image.core.fill("L", (x1 - x0, y1 - y0), 0)
    for core, x, y in placed:
        w, h = core.size
        mask.paste(255, (x - x0, y - y0, x - x0 + w, y - y0 + h), core)
    return mask, (x0, y0)


def _letters(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int,
             fill: tuple[int, ...], stroke: int, stroke_fill: tuple[int, ...]) -> None:
    """``draw.text(xy, text, font=font(size), fill=fill, stroke_width=stroke,
    stroke_fill=stroke_fill)``, from cached letters (see :func:`_line_mask`).

    Signs are lettered with a few font sizes per detail level, so most of the
    letters of a new sign have been rendered before; this is what makes a
    new sign cheap to draw. ``text`` is a single line.
    """
    x, y = xy
    start = (math.modf(x)[0], math.modf(y)[0])
    ink = draw.draw.draw_ink(fill)
    passes = [(ink, 0)]
    if stroke:  # the outline first, then the letters over it unless they are the same colour
        stroke_ink = draw.draw.draw_ink(stroke_fill)
        passes = [(stroke_ink, stroke)] + ([(ink, 0)] if ink != stroke_ink else [])
    for pass_ink, width in passes:
        line = _line_mask(text, size, width, start)
        if line is not None:
            mask, (ox, oy) = line
            draw.draw.draw_bitmap((int(x) + ox, int(y) + oy), mask, pass_ink)


def _line_layout(lines: list[str], size: int, sign: SignStyle) -> tuple[int, int, int, list[float], int, int]:
    """Measurements of horizontal lettering: ``(stroke, pad, line_h, widths, width, height)``,
    the layer size before width scale and slant (measured, nothing drawn)."""
    stroke = int(round(sign.weight * size / 40.0))
    pad = stroke + (max(1, size // 14) if sign.outline else 0) + 2
    space = sign.spacing * size
    line_h = int(size * 1.18)
    widths = [sum(_advance(size, c) for c in line) + space * max(0, len(line) - 1) for line in lines]
    width = int(max(widths) + 2 * pad + 2 * stroke)
    height = int(line_h * len(lines) + 2 * pad)
    return stroke, pad, line_h, widths, max(1, width), max(1, height)


def _shaped_size(size: tuple[int, int], sign: SignStyle) -> tuple[int, int]:
    """Size of a lettering layer of ``size`` after :func:`_shape_letters`."""
    w, h = size
    if abs(sign.width - 1.0) > 1e-3:
        w = max(1, int(round(w * sign.width)))
    if sign.slant:
        w += int(math.ceil(sign.slant * h))
    return w, h


def _text_layer(lines: list[str], size: int, sign: SignStyle, colour: RGB,
                vertical: bool) -> Image.Image:
    """The lettering as an RGBA layer on transparent ground, before width/slant."""
    outline = sign.outline
    if vertical:
        stroke = int(round(sign.weight * size / 40.0))
        pad = stroke + (max(1, size // 14) if outline else 0) + 2
        chars = [c for c in lines[0]]
        step = int(size * 1.02)
        width = int(max(_advance(size, c) for c in chars if c.strip()) + 2 * pad) if chars else 1
        height = int(step * len(chars) + 2 * pad)
        layer = Image.new("RGBA", (max(1, width), max(1, height)), (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        for i, c in enumerate(chars):
            if not c.strip():
                continue
            x = (width - _advance(size, c)) / 2
            _letters(draw, (x, pad + i * step), c, size, colour + (255,), stroke, (outline or colour) + (255,))
        return layer
    stroke, pad, line_h, widths, width, height = _line_layout(lines, size, sign)
    space = sign.spacing * size
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    ow = max(1, size // 14) if outline else 0
    for i, line in enumerate(lines):
        x = pad + stroke + (max(widths) - widths[i]) / 2
        y = pad + i * line_h
        if space == 0:
            _letters(draw, (x, y), line, size, colour + (255,), stroke + ow, (outline or colour) + (255,))
        else:
            for c in line:
                _letters(draw, (x, y), c, size, colour + (255,), stroke + ow, (outline or colour) + (255,))
                x += _advance(size, c) + space
    return layer


def _shape_letters(layer: Image.Image, sign: SignStyle) -> Image.Image:
    """Apply the style's width scale and slant to a lettering layer."""
    w, h = layer.size
    if abs(sign.width - 1.0) > 1e-3:
        layer = layer.resize((max(1, int(round(w * sign.width))), h), Image.Resampling.BICUBIC)
        w = layer.size[0]
    if sign.slant:
        extra = int(math.ceil(sign.slant * h))
        # Output x maps to input x - slant * (h - y): letters lean to the right.
        layer = layer.transform((w + extra, h), Image.Transform.AFFINE,
                                (1.0, sign.slant, -sign.slant * h, 0.0, 1.0, 0.0),
                                Image.Resampling.BICUBIC)
    return layer


def _split_two(text: str) -> list[str]:
    words = text.split(" ")
    if len(words) < 2:
        return [text]
    best = min(range(1, len(words)), key=lambda k: abs(len(" ".join(words[:k])) - len(" ".join(words[k:]))))
    return [" ".join(words[:best]), " ".join(words[best:])]


@lru_cache(maxsize=8192)
def sign_texture_size(width_m: float, height_m: float, level: int = 0) -> tuple[int, int]:
    """Pixel size of :func:`sign_texture` for a board of this size (without drawing it)."""
    ppm = SIGN_PPM / (2**level)
    return max(4, int(round(width_m * ppm))), max(4, int(round(height_m * ppm)))


@byte_budget_cache(SIGN_CACHE_BYTES)
def sign_texture(name: str, style_name: str, width_m: float, height_m: float,
                 vertical: bool = False, level: int = 0) -> Image.Image:
    """The RGB texture of a sign board showing ``name``.

    The lettering is sized to fill the board: one line when it fits large
    enough, else two lines; ``vertical`` stacks the letters top to bottom.
    """
    style = STYLES[style_name]
    sign = style.sign
    ppm = SIGN_PPM / (2**level)
    w_px, h_px = sign_texture_size(width_m, height_m, level)
    board, letters = sign_colours(name, sign)
    light = 1.0 if sign.glow else style.light
    board_c = shade(board, min(1.0, light * 1.05))
    letter_c = shade(letters, 1.0 if (sign.glow or style.light >= 0.8) else min(1.0, light * 1.25))
    img = Image.new("RGBA", (w_px, h_px), board_c + (255,))
    draw = ImageDraw.Draw(img)
    border = max(1, int(0.04 * ppm))
    draw.rectangle([0, 0, w_px - 1, h_px - 1], outline=shade(style.trim, light) + (255,), width=border)
    text = cased(name, sign)
    inner_w, inner_h = w_px - 4 * border, h_px - 4 * border
    if vertical:
        size = max(4, int(min(inner_h / (len(text) * 1.02 + 0.5), inner_w * 0.8)))
        layer = _shape_letters(_text_layer([text], size, sign, letter_c, True), sign)
    else:
        # One line or two, whichever lets the letters be larger. Lettering
        # scales with the font size, so one trial measurement tells the size
        # that fits; only the chosen layout is drawn.
        best: tuple[int, list[str]] | None = None
        for lines in ([text], _split_two(text)):
            if best is not None and len(lines) == 1:
                continue
            size = max(4, int(inner_h / (1.18 * len(lines) + 0.15)))
            cw, ch = _shaped_size(_line_layout(lines, size, sign)[4:], sign)
            scale = min(1.0, inner_w / cw, inner_h / ch)
            if scale < 1.0:
                size = max(4, int(size * scale * 0.97))
            if best is None or size > best[0]:
                best = (size, lines)
        assert best is not None
        layer = _shape_letters(_text_layer(best[1], best[0], sign, letter_c, False), sign)
        if layer.size[0] > inner_w or layer.size[1] > inner_h:
            scale = min(inner_w / layer.size[0], inner_h / layer.size[1])
            layer = layer.resize((max(1, int(layer.size[0] * scale)), max(1, int(layer.size[1] * scale))),
                                 Image.Resampling.LANCZOS)
    if sign.glow:
        halo = layer.filter(ImageFilter.GaussianBlur(radius=max(1.0, layer.size[1] / 14)))
        img.alpha_composite(halo, ((w_px - halo.size[0]) // 2, (h_px - halo.size[1]) // 2))
    img.alpha_composite(layer, ((w_px - layer.size[0]) // 2, (h_px - layer.size[1]) // 2))
    return img.convert("RGB")


def texture_levels(texture_ppm: float, screen_ppm: np.ndarray, max_level: int = 4) -> np.ndarray:
    """Per screen resolution, the coarsest texture level (at most ``max_level``; level
    ``k`` has ``texture_ppm / 2**k`` pixels per metre) that still has at least that resolution."""
    return sum((texture_ppm / (2**k) >= screen_ppm).astype(int) for k in range(1, max_level + 1))


_MIB = 2**20
#: The texture caches a user can size, by the names of their budgets.
_BUDGETED_CACHES = {"facade": look_texture, "sign": sign_texture}


def set_texture_cache_budget(facade_mb: float | None = None, sign_mb: float | None = None) -> None:
    """Set this process's memory budgets for cached facade and sign textures, in MiB
    (``None`` leaves one as it is).

    The defaults (:data:`FACADE_CACHE_BYTES`, :data:`SIGN_CACHE_BYTES`) suit
    one image env per process. Where many env processes share a machine (an
    async vector env with many workers), call this in each worker to trade
    speed for memory: textures dropped from the cache are drawn again when a
    view needs them. A lowered budget takes effect at once.

    Raises:
        ValueError: for a budget that is negative or not a finite number (then
            neither budget changes).
    """
    budgets = {"facade": facade_mb, "sign": sign_mb}
    for name, mb in budgets.items():
        if mb is not None and (isinstance(mb, bool) or not isinstance(mb, numbers.Real)
                               or not math.isfinite(mb) or mb < 0):
            raise ValueError(f"{name}_mb must be a finite number of MiB >= 0, got {mb!r}")
    for name, mb in budgets.items():
        if mb is not None:
            _BUDGETED_CACHES[name].resize(int(mb * _MIB))


def texture_cache_info() -> dict[str, dict[str, int]]:
    """Per texture cache (``"facade"``, ``"sign"``): the bytes its images take, its budget
    in bytes, the number of images, and the number of textures drawn so far (misses)."""
    return {name: {"bytes": cache.bytes, "max_bytes": cache.max_bytes, "images": len(cache.items),
                   "misses": cache.misses}
            for name, cache in _BUDGETED_CACHES.items()}
