"""Drawing the card table: 52 procedurally drawn cards on a felt-coloured canvas.

Nothing is loaded from disk. Each card sprite is drawn with Pillow -- rank
indices in two corners, suit pips in the classic layouts for A-10, and a
double-headed figure for J, Q and K told apart by headgear (a jester's cap
for J, a pearled crown and long hair for Q, a pointed crown and beard for K)
-- at three times its size and reduced, so edges are smooth. Sprites are
cached by everything that changes their pixels (card, size, style, table
colour), the empty table by (size, colour); composing a table is then one
array copy plus one slice assignment per card, in numpy.

Two card styles exist: ``"classic"`` (pip layouts and figures) and
``"minimal"`` (one large rank glyph over one large pip, easier to read at
small image sizes). The table colour is any ``#rrggbb`` or a name in
:data:`TABLE_COLORS`; the default is the reference's felt green ``#35654d``.
No text other than the cards' own indices is drawn.

Example:
    >>> image = render_table(["AS", "7H", "KD", "2C"], width=300, height=200)
    >>> image.shape, image.dtype, image[0, 0].tolist()
    ((200, 300, 3), dtype('uint8'), [53, 101, 77])
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from gengym_core.fonts import font
from gym_generalpoints.cards import RANKS, parse_card

#: Named table colours; any ``#rrggbb`` works too.
TABLE_COLORS: dict[str, str] = {
    "green": "#35654d",
    "blue": "#24496e",
    "burgundy": "#6a2332",
    "slate": "#3d4650",
}
DEFAULT_TABLE_COLOR = "green"
#: Card styles the renderer draws.
CARD_STYLES: tuple[str, ...] = ("classic", "minimal")
#: Card aspect ratio, width to height.
CARD_ASPECT = 5 / 7

RED_INK = (190, 22, 40)
BLACK_INK = (22, 22, 26)
_PAPER = (250, 249, 244)
_EDGE = (150, 150, 150)
_FACE_PAPER = (247, 236, 206)
_GOLD = (212, 162, 38)
_SKIN = (242, 206, 170)
_HAIR = (112, 70, 32)
_SUPERSAMPLE = 3
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")

# Pip centres as (column, row) fractions of the card for each number rank.
_L, _C, _R = 0.33, 0.50, 0.67
_ROWS4 = (0.22, 0.407, 0.593, 0.78)
_PIP_LAYOUTS: dict[str, tuple[tuple[float, float], ...]] = {
    "2": ((_C, 0.22), (_C, 0.78)),
    "3": ((_C, 0.22), (_C, 0.5), (_C, 0.78)),
    "4": ((_L, 0.22), (_R, 0.22), (_L, 0.78), (_R, 0.78)),
    "5": ((_L, 0.22), (_R, 0.22), (_C, 0.5), (_L, 0.78), (_R, 0.78)),
    "6": tuple((x, y) for y in (0.22, 0.5, 0.78) for x in (_L, _R)),
    "7": tuple((x, y) for y in (0.22, 0.5, 0.78) for x in (_L, _R)) + ((_C, 0.36),),
    "8": tuple((x, y) for y in (0.22, 0.5, 0.78) for x in (_L, _R)) + ((_C, 0.36), (_C, 0.64)),
    "9": tuple((x, y) for y in _ROWS4 for x in (_L, _R)) + ((_C, 0.5),),
    "10": tuple((x, y) for y in _ROWS4 for x in (_L, _R)) + ((_C, 0.314), (_C, 0.686)),
}


def parse_color(color: str | Sequence[int]) -> tuple[int, int, int]:
    """An RGB triple from a name in :data:`TABLE_COLORS`, ``#rrggbb`` or a triple.

    Raises:
        ValueError: The colour is none of those.
    """
    if isinstance(color, str):
        hex_text = TABLE_COLORS.get(color.lower(), color)
        m = _HEX.fullmatch(hex_text.strip())
        if m is None:
            raise ValueError(
                f"unknown colour {color!r}: use '#rrggbb' or one of {', '.join(TABLE_COLORS)}"
            )
        value = int(m.group(1), 16)
        return (value >> 16, (value >> 8) & 255, value & 255)
    try:
        rgb = tuple(int(c) for c in color)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(
            f"a colour is a name ({', '.join(TABLE_COLORS)}), '#rrggbb' or three values in "
            f"0..255, got {color!r}"
        )
    return rgb  # type: ignore[return-value]


@dataclass(frozen=True)
class TableLayout:
    """Where the cards lie: one centred row with equal gaps.

    Attributes:
        card_width: Width of a card in pixels.
        card_height: Height of a card in pixels (aspect 5:7).
        margin: Shadow offset; sprites are ``margin`` pixels larger each way.
        positions: Top-left corner ``(x, y)`` of each card.
        max_shift: Largest ``(dx, dy)`` jitter that keeps cards and shadows
            apart and on the canvas.
    """

    card_width: int
    card_height: int
    margin: int
    positions: tuple[tuple[int, int], ...]
    max_shift: tuple[int, int]


@lru_cache(maxsize=64)
def table_layout(num_cards: int, width: int, height: int) -> TableLayout:
    """The layout of ``num_cards`` cards on a ``width`` x ``height`` table."""
    gap_ratio, border = 0.12, 0.07
    card_width = int(
        min(
            width * (1 - 2 * border) / (num_cards + (num_cards - 1) * gap_ratio),
            height * (1 - 2 * border) * CARD_ASPECT,
        )
    )
    card_width = max(card_width, 4)
    card_height = round(card_width / CARD_ASPECT)
    gap = round(card_width * gap_ratio)
    margin = max(1, round(card_width * 0.025))
    x0 = (width - (num_cards * card_width + (num_cards - 1) * gap)) // 2
    y0 = (height - card_height) // 2
    positions = tuple((x0 + i * (card_width + gap), y0) for i in range(num_cards))
    max_shift = (max(0, (gap - margin) // 2), max(0, min(y0 - margin, card_height // 4)))
    return TableLayout(card_width, card_height, margin, positions, max_shift)


@lru_cache(maxsize=256)
def _pip_mask(suit: str, size: int) -> Image.Image:
    """A suit symbol as an 8-bit mask of ``size`` x ``size`` pixels (upright)."""
    size = max(2, size)
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)

    def circle(cx: float, cy: float, r: float) -> None:
        draw.ellipse([(cx - r) * size, (cy - r) * size, (cx + r) * size, (cy + r) * size], fill=255)

    def polygon(*points: tuple[float, float]) -> None:
        draw.polygon([(x * size, y * size) for x, y in points], fill=255)

    if suit == "D":
        polygon((0.5, 0.0), (0.88, 0.5), (0.5, 1.0), (0.12, 0.5))
    elif suit == "H":
        circle(0.285, 0.32, 0.25)
        circle(0.715, 0.32, 0.25)
        polygon((0.045, 0.40), (0.5, 0.98), (0.955, 0.40), (0.5, 0.30))
    elif suit == "S":
        circle(0.29, 0.57, 0.23)
        circle(0.71, 0.57, 0.23)
        polygon((0.07, 0.50), (0.5, 0.0), (0.93, 0.50), (0.5, 0.72))
        polygon((0.5, 0.55), (0.30, 1.0), (0.70, 1.0))
    elif suit == "C":
        circle(0.5, 0.27, 0.22)
        circle(0.26, 0.59, 0.22)
        circle(0.74, 0.59, 0.22)
        circle(0.5, 0.52, 0.12)
        polygon((0.5, 0.5), (0.32, 1.0), (0.68, 1.0))
    else:
        raise ValueError(f"unknown suit {suit!r}")
    return mask


def _paste_pip(
    card: Image.Image, suit: str, ink: tuple, cx: float, cy: float, size: int, flip: bool
) -> None:
    mask = _pip_mask(suit, size)
    if flip:
        mask = mask.rotate(180)
    card.paste(ink, (round(cx - size / 2), round(cy - size / 2)), mask)


def _draw_text(
    draw: ImageDraw.ImageDraw,
    text: str,
    cx: float,
    cy: float,
    size: int,
    max_width: float,
    ink: tuple,
) -> None:
    """Centre ``text`` at (cx, cy), shrinking it to fit ``max_width``."""
    face = font(size)
    left, _, right, _ = face.getbbox(text)
    if right - left > max_width:
        face = font(max(1, int(size * max_width / (right - left))))
    draw.text(
        (cx, cy),
        text,
        fill=ink,
        font=face,
        anchor="mm",
        stroke_width=max(1, size // 14),
        stroke_fill=ink,
    )


def _draw_corner_index(card: Image.Image, rank: str, suit: str, ink: tuple) -> None:
    """Rank and small pip in the top-left corner, and the same turned in the bottom-right."""
    w, h = card.size
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    _draw_text(draw, rank, 0.115 * w, 0.085 * h, round(0.17 * w), 0.19 * w, ink)
    pip = round(0.11 * w)
    mask = _pip_mask(suit, pip)
    layer.paste(ink + (255,), (round(0.115 * w - pip / 2), round(0.165 * h)), mask)
    turned = layer.rotate(180)
    card.paste(layer, (0, 0), layer)
    card.paste(turned, (0, 0), turned)


def _draw_number_card(card: Image.Image, rank: str, suit: str, ink: tuple) -> None:
    w, h = card.size
    if rank == "A":
        _paste_pip(card, suit, ink, w / 2, h / 2, round(0.42 * w), False)
        return
    size = round((0.19 if rank in ("9", "10") else 0.21) * w)
    for x, y in _PIP_LAYOUTS[rank]:
        _paste_pip(card, suit, ink, x * w, y * h, size, y > 0.5)


def _draw_figure(half: Image.Image, rank: str, suit: str, ink: tuple) -> None:
    """The upper half of a court card: a bust with the rank's headgear."""
    w, h = half.size
    draw = ImageDraw.Draw(half)
    outline = (40, 30, 25)
    line = max(1, round(w * 0.012))

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [x0 * w, y0 * h, x1 * w, y1 * h]

    def poly(*points: tuple[float, float]) -> list[tuple[float, float]]:
        return [(x * w, y * h) for x, y in points]

    # Robe and collar.
    draw.polygon(
        poly((0.22, 0.80), (0.78, 0.80), (0.95, 1.0), (0.05, 1.0)), fill=ink, outline=outline
    )
    draw.polygon(
        poly((0.30, 0.78), (0.70, 0.78), (0.62, 0.90), (0.38, 0.90)), fill=_GOLD, outline=outline
    )
    if rank == "Q":  # long hair behind the face
        draw.ellipse(box(0.29, 0.34, 0.71, 0.86), fill=_HAIR, outline=outline, width=line)
    # Head and face.
    draw.ellipse(box(0.36, 0.40, 0.64, 0.76), fill=_SKIN, outline=outline, width=line)
    for ex in (0.45, 0.55):
        draw.ellipse(box(ex - 0.018, 0.54, ex + 0.018, 0.57), fill=outline)
    draw.line(poly((0.46, 0.67), (0.54, 0.67)), fill=(150, 60, 50), width=line)
    if rank == "K":  # beard and a pointed crown
        draw.polygon(
            poly((0.37, 0.64), (0.63, 0.64), (0.58, 0.80), (0.5, 0.86), (0.42, 0.80)),
            fill=_HAIR,
            outline=outline,
        )
        draw.line(poly((0.45, 0.67), (0.55, 0.67)), fill=_SKIN, width=line)
        draw.polygon(
            poly(
                (0.35, 0.42),
                (0.35, 0.20),
                (0.43, 0.30),
                (0.5, 0.12),
                (0.57, 0.30),
                (0.65, 0.20),
                (0.65, 0.42),
            ),
            fill=_GOLD,
            outline=outline,
        )
        draw.ellipse(box(0.47, 0.30, 0.53, 0.36), fill=ink)
    elif rank == "Q":  # a band crown topped with pearls
        draw.rectangle(box(0.37, 0.32, 0.63, 0.42), fill=_GOLD, outline=outline, width=line)
        for px in (0.40, 0.5, 0.60):
            draw.ellipse(
                box(px - 0.04, 0.22, px + 0.04, 0.31),
                fill=(245, 245, 240),
                outline=outline,
                width=line,
            )
    else:  # J: a soft cap with a feather
        draw.chord(box(0.33, 0.26, 0.67, 0.56), 180, 360, fill=ink, outline=outline, width=line)
        draw.rectangle(box(0.32, 0.40, 0.68, 0.45), fill=_GOLD, outline=outline, width=line)
        draw.polygon(
            poly((0.62, 0.38), (0.86, 0.12), (0.80, 0.30), (0.68, 0.42)),
            fill=(60, 120, 70),
            outline=outline,
        )
    mask = _pip_mask(suit, round(0.16 * w))
    half.paste(ink, (round(0.05 * w), round(0.05 * h)), mask)


def _draw_face_card(card: Image.Image, rank: str, suit: str, ink: tuple) -> None:
    w, h = card.size
    x0, y0, x1, y1 = round(0.2 * w), round(0.14 * h), round(0.8 * w), round(0.86 * h)
    draw = ImageDraw.Draw(card)
    draw.rectangle([x0, y0, x1, y1], fill=_FACE_PAPER)
    half = Image.new("RGB", (x1 - x0, (y1 - y0) // 2), _FACE_PAPER)
    _draw_figure(half, rank, suit, ink)
    card.paste(half, (x0, y0))
    card.paste(half.rotate(180), (x0, y1 - half.size[1]))
    draw.rectangle([x0, y0, x1, y1], outline=ink, width=max(1, round(0.012 * w)))


def _draw_minimal_card(card: Image.Image, rank: str, suit: str, ink: tuple) -> None:
    w, h = card.size
    draw = ImageDraw.Draw(card)
    _draw_text(draw, rank, w / 2, 0.40 * h, round(0.50 * w), 0.62 * w, ink)
    _paste_pip(card, suit, ink, w / 2, 0.70 * h, round(0.30 * w), False)


@lru_cache(maxsize=1024)
def card_sprite(
    code: str,
    card_width: int,
    card_height: int,
    style: str = "classic",
    table_rgb: tuple[int, int, int] = (53, 101, 77),
) -> np.ndarray:
    """One card with its shadow on the table colour, as a read-only RGB array.

    The array is ``(card_height + m, card_width + m, 3)`` with the shadow
    offset ``m`` of :func:`table_layout`.

    Raises:
        ValueError: Unknown card code or style.
    """
    card_info = parse_card(code)
    if style not in CARD_STYLES:
        raise ValueError(f"unknown card style {style!r}; expected one of {CARD_STYLES}")
    s = _SUPERSAMPLE
    margin = max(1, round(card_width * 0.025))
    w, h = card_width * s, card_height * s
    ink = RED_INK if card_info.is_red else BLACK_INK
    canvas = Image.new("RGBA", (w + margin * s, h + margin * s), table_rgb + (255,))
    draw = ImageDraw.Draw(canvas)
    radius = round(0.07 * w)
    shadow = tuple(int(c * 0.55) for c in table_rgb) + (255,)
    draw.rounded_rectangle(
        [margin * s, margin * s, w + margin * s - 1, h + margin * s - 1], radius, fill=shadow
    )
    card = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    ImageDraw.Draw(card).rounded_rectangle(
        [0, 0, w - 1, h - 1], radius, fill=_PAPER + (255,), outline=_EDGE + (255,), width=max(1, s)
    )
    face = Image.new("RGB", (w, h), _PAPER)
    if style == "minimal":
        _draw_minimal_card(face, card_info.rank, card_info.suit, ink)
    elif card_info.is_face:
        _draw_face_card(face, card_info.rank, card_info.suit, ink)
    else:
        _draw_number_card(face, card_info.rank, card_info.suit, ink)
    _draw_corner_index(face, card_info.rank, card_info.suit, ink)
    # Keep the rounded outline: paint the face only inside the card's shape, inset by the edge.
    inside = Image.new("L", (w, h), 0)
    ImageDraw.Draw(inside).rounded_rectangle(
        [s, s, w - 1 - s, h - 1 - s], max(0, radius - s), fill=255
    )
    card.paste(face, (0, 0), inside)
    canvas.alpha_composite(card)
    reduced = canvas.convert("RGB").reduce(s)
    array = np.asarray(reduced, dtype=np.uint8).copy()
    array.flags.writeable = False
    return array


@lru_cache(maxsize=16)
def table_background(width: int, height: int, table_rgb: tuple[int, int, int]) -> np.ndarray:
    """The empty table, read-only (copy it before drawing on it)."""
    array = np.empty((height, width, 3), dtype=np.uint8)
    array[:, :] = np.array(table_rgb, dtype=np.uint8)
    array.flags.writeable = False
    return array


def render_table(
    cards: Sequence[str],
    *,
    width: int = 1200,
    height: int = 1200,
    style: str = "classic",
    table_color: str | Sequence[int] = DEFAULT_TABLE_COLOR,
    offsets: Sequence[tuple[int, int]] | None = None,
) -> np.ndarray:
    """The table with ``cards`` in one row, as a new ``(height, width, 3)`` uint8 array.

    Args:
        cards: Card codes, left to right.
        width: Canvas width in pixels.
        height: Canvas height in pixels.
        style: One of :data:`CARD_STYLES`.
        table_color: Felt colour (name or ``#rrggbb``).
        offsets: Per-card ``(dx, dy)`` shifts in pixels, clipped to the
            layout's ``max_shift`` (see :class:`TableLayout`).
    """
    rgb = parse_color(table_color)
    out = table_background(width, height, rgb).copy()
    if not cards:
        return out
    layout = table_layout(len(cards), width, height)
    mx, my = layout.max_shift
    for k, code in enumerate(cards):
        sprite = card_sprite(code, layout.card_width, layout.card_height, style, rgb)
        x, y = layout.positions[k]
        if offsets is not None:
            dx, dy = offsets[k]
            x += min(max(int(dx), -mx), mx)
            y += min(max(int(dy), -my), my)
        # Clip to the canvas (only tiny canvases need it).
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + sprite.shape[1], width), min(y + sprite.shape[0], height)
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = sprite[y0 - y : y1 - y, x0 - x : x1 - x]
    return out


def all_card_codes() -> tuple[str, ...]:
    """Every card code, rank-major (``AS, AH, AD, AC, 2S, ...``), for contact sheets."""
    return tuple(rank + suit for rank in RANKS for suit in "SHDC")
