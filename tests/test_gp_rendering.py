"""The GeneralPoints card renderer: colours, distinct sprites, caching, layout, any resolution."""

from __future__ import annotations

import numpy as np
import pytest

from gym_generalpoints.rendering import (
    CARD_STYLES,
    TABLE_COLORS,
    all_card_codes,
    card_sprite,
    parse_color,
    render_table,
    table_layout,
)

FELT = (0x35, 0x65, 0x4D)


def red_ink(a: np.ndarray) -> float:
    a = a.astype(int)
    return float(((a[..., 0] > 150) & (a[..., 1] < 90) & (a[..., 2] < 100)).mean())


def test_default_table_is_the_reference_felt_at_1200_square():
    image = render_table(["AS", "7H", "KD", "2C"])
    assert image.shape == (1200, 1200, 3) and image.dtype == np.uint8
    for y, x in [(0, 0), (0, 1199), (1199, 0), (1199, 1199), (600, 3), (20, 600)]:
        assert tuple(image[y, x]) == FELT
    image[0, 0] = 0  # a fresh array each call, writable
    assert tuple(render_table(["AS", "7H", "KD", "2C"])[0, 0]) == FELT


def test_suits_are_drawn_in_their_colours():
    for code in all_card_codes():
        sprite = card_sprite(code, 100, 140)
        if code[-1] in "HD":
            assert red_ink(sprite) > 0.03, code
        else:
            assert red_ink(sprite) == 0.0, code
            assert (sprite.max(axis=-1) < 60).mean() > 0.06, code  # black ink


def test_all_52_cards_look_different_and_corners_identify_the_rank():
    sprites = {code: card_sprite(code, 60, 84) for code in all_card_codes()}
    flat = {code: s.tobytes() for code, s in sprites.items()}
    assert len(set(flat.values())) == 52
    # The top-left index (rank + small pip) differs between any two ranks of one suit.
    for suit in "SHDC":
        corners = {
            code: s[3:20, 2:14].tobytes() for code, s in sprites.items() if code.endswith(suit)
        }
        assert len(set(corners.values())) == 13, suit


def test_court_cards_differ_in_their_figures():
    figures = [card_sprite(rank + "S", 120, 168)[30:140, 30:95].astype(int) for rank in "JQK"]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(figures[i] - figures[j]).mean() > 8


def test_sprites_are_cached_read_only_and_keyed_by_everything_that_changes_pixels():
    a = card_sprite("QH", 80, 112, "classic", FELT)
    assert card_sprite("QH", 80, 112, "classic", FELT) is a
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0, 0] = 0
    assert not np.array_equal(a, card_sprite("QH", 80, 112, "minimal", FELT))
    blue = card_sprite("QH", 80, 112, "classic", parse_color("blue"))
    assert not np.array_equal(a, blue) and tuple(blue[0, 0]) == parse_color("blue")
    assert card_sprite("QH", 40, 56).shape == (57, 41, 3)  # card plus shadow margin


def test_styles_and_table_colours():
    assert set(CARD_STYLES) == {"classic", "minimal"}
    codes = ["10D", "JC", "QH", "5S"]
    images = {
        style: render_table(codes, width=400, height=300, style=style) for style in CARD_STYLES
    }
    assert not np.array_equal(images["classic"], images["minimal"])
    for name, hex_code in TABLE_COLORS.items():
        assert tuple(
            render_table(codes, width=200, height=200, table_color=name)[0, 0]
        ) == parse_color(hex_code)
    assert parse_color("#35654D") == FELT == parse_color("green") == parse_color([53, 101, 77])
    for bad in ["plaid", "#12345", (1, 2), (0, 0, 256)]:
        with pytest.raises(ValueError):
            parse_color(bad)
    with pytest.raises(ValueError, match="style"):
        card_sprite("AS", 50, 70, "cubist")


@pytest.mark.parametrize("size", [(2000, 600), (448, 448), (64, 64), (50, 300)])
def test_any_resolution(size):
    width, height = size
    image = render_table(["AS", "2H", "3D", "4C"], width=width, height=height)
    assert image.shape == (height, width, 3)
    layout = table_layout(4, width, height)
    card_area = 4 * layout.card_width * layout.card_height
    drawn = (image != np.array(FELT, dtype=np.uint8)).any(axis=-1).sum()
    assert 0.9 * card_area < drawn < 1.3 * card_area  # the four cards (and shadows), nothing else


def test_layout_keeps_aspect_and_cards_apart_and_offsets_are_clipped():
    layout = table_layout(4, 1200, 1200)
    assert abs(layout.card_width / layout.card_height - 5 / 7) < 0.01
    xs = [x for x, _ in layout.positions]
    assert all(b - a >= layout.card_width + layout.margin for a, b in zip(xs, xs[1:], strict=False))
    mx, my = layout.max_shift
    assert mx > 0 and my > 0
    codes = ["AS", "7H", "KD", "2C"]
    plain = render_table(codes)
    shifted = render_table(codes, offsets=[(mx, my), (-mx, -my), (0, 0), (mx, -my)])
    assert not np.array_equal(plain, shifted)
    assert np.array_equal(
        shifted,
        render_table(codes, offsets=[(10 * mx, 10 * my), (-mx, -5 * my), (0, 0), (mx, -my)]),
    )
    # Even at the largest shifts neighbouring cards (with shadows) do not overlap.
    offsets = [(mx, my), (-mx, -my), (0, 0), (mx, -my)]
    for i in range(3):
        right = xs[i] + offsets[i][0] + layout.card_width + layout.margin
        left = xs[i + 1] + offsets[i + 1][0]
        assert right <= left
        if right < left:
            assert (shifted[:, right] == np.array(FELT, dtype=np.uint8)).all()
