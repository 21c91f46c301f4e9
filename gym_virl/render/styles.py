"""City styles: how a generated city looks.

A style changes only pixels -- palette, architecture, sign lettering,
street furniture, time of day -- never the street network, the places or
their names, so the text task is the same in every style. This mirrors the
paper's visual-OOD protocol (train in one city, test in nine others): the
default style ``"harbor"`` is the training look, and the nine others in
:data:`HELD_OUT_STYLES` are kept for visual out-of-distribution evaluation.

Sign lettering. Pillow's embedded font covers Latin letters only, and a
name must stay readable as itself, so no style writes names in another
writing system. Styles vary what can be varied legibly: case (upper, title),
weight (stroke width), width (condensed or extended), slant (shear),
letter spacing, outlined or glowing letters, and layout -- the ``"neon"``
style adds vertical blade signs with the letters stacked top to bottom, the
way East Asian street signs are set, and ``"old_town"`` hangs projecting
blade signs that face along the street.
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class SignStyle:
    """How storefront signs are lettered.

    Attributes:
        case: ``"upper"``, ``"title"`` or ``"as_is"``.
        weight: Stroke width in sign pixels per 40 px of letter height (0: regular).
        width: Horizontal scale of letters (1: normal, <1 condensed).
        slant: Shear of letters (0: upright; 0.2: italic-like).
        spacing: Extra space between letters, as a fraction of letter height.
        boards: Background colours of sign boards.
        letters: Letter colours (paired with ``boards`` by index).
        outline: Colour of an outline around letters, or ``None``.
        glow: Whether letters glow (night signs).
        blade: ``None``, ``"horizontal"`` (projecting blade sign with the
            name written across) or ``"vertical"`` (letters stacked).
    """

    case: str = "title"
    weight: float = 0.0
    width: float = 1.0
    slant: float = 0.0
    spacing: float = 0.0
    boards: tuple[RGB, ...] = ((30, 40, 60),)
    letters: tuple[RGB, ...] = ((245, 240, 225),)
    outline: RGB | None = None
    glow: bool = False
    blade: str | None = None


@dataclass(frozen=True)
class CityStyle:
    """The look of a city.

    Attributes:
        name: Name used to select it.
        description: One line for docs.
        time_of_day: ``"day"``, ``"golden"``, ``"dusk"``, ``"overcast"`` or ``"night"``.
        sky_top: Sky colour at the top of the view.
        sky_horizon: Sky colour at the horizon.
        clouds: Number of clouds in the sky panorama.
        cloud_colour: Their colour.
        light: Overall brightness of lit surfaces (1 = full daylight).
        ground: Sidewalk and open-ground colour.
        road: Asphalt colour.
        marking: Road-marking colour.
        curb: Curb line colour.
        walls: Facade colours; each building picks one.
        trim: Colour of cornices, frames and storefront trim.
        window: Window glass colour.
        window_lit: Colour of lit windows (night), or ``None``.
        window_shape: ``"grid"``, ``"arched"``, ``"ribbon"`` or ``"tall"``.
        floor_height: Storey height in metres.
        floors_scale: Multiplier on the city's storey counts.
        awnings: Awning colours (empty: no awnings).
        sign: Sign lettering.
        trees: ``None``, ``"round"``, ``"conifer"`` or ``"palm"``.
        tree_density: Share of curbside slots with a tree.
        lamp: ``None``, ``"modern"`` or ``"classic"``.
        lamp_density: Share of curbside slots with a lamp post.
        lamp_glow: Whether lamps are lit.
        haze: Strength of distance haze (0: none).
    """

    name: str
    description: str
    time_of_day: str
    sky_top: RGB
    sky_horizon: RGB
    clouds: int
    cloud_colour: RGB
    light: float
    ground: RGB
    road: RGB
    marking: RGB
    curb: RGB
    walls: tuple[RGB, ...]
    trim: RGB
    window: RGB
    window_lit: RGB | None
    window_shape: str
    floor_height: float
    floors_scale: float
    awnings: tuple[RGB, ...]
    sign: SignStyle
    trees: str | None
    tree_density: float
    lamp: str | None
    lamp_density: float
    lamp_glow: bool
    haze: float


_STYLES = (
    CityStyle(
        name="harbor",
        description="Training look: brick and brownstone, clear day, title-case signs, "
        "round street trees.",
        time_of_day="day",
        sky_top=(96, 150, 215),
        sky_horizon=(196, 220, 240),
        clouds=6,
        cloud_colour=(245, 247, 250),
        light=1.0,
        ground=(178, 174, 166),
        road=(72, 74, 78),
        marking=(236, 236, 228),
        curb=(140, 136, 130),
        walls=((150, 78, 60), (122, 70, 52), (170, 104, 78), (108, 92, 84), (186, 170, 146)),
        trim=(232, 226, 212),
        window=(64, 84, 104),
        window_lit=None,
        window_shape="grid",
        floor_height=3.3,
        floors_scale=1.0,
        awnings=((40, 90, 60), (140, 30, 30), (30, 50, 110)),
        sign=SignStyle(case="title", weight=0.6, boards=((22, 44, 70), (245, 240, 228), (110, 24, 30)),
                       letters=((250, 244, 226), (26, 30, 40), (250, 236, 200))),
        trees="round",
        tree_density=0.35,
        lamp="modern",
        lamp_density=0.25,
        lamp_glow=False,
        haze=0.25,
    ),
    CityStyle(
        name="desert",
        description="Sandstone and ochre at noon, flat roofs, palms, condensed upper-case signs.",
        time_of_day="day",
        sky_top=(70, 140, 225),
        sky_horizon=(225, 225, 210),
        clouds=0,
        cloud_colour=(250, 250, 250),
        light=1.1,
        ground=(214, 192, 150),
        road=(110, 100, 90),
        marking=(250, 240, 200),
        curb=(190, 170, 130),
        walls=((222, 190, 140), (206, 160, 104), (232, 210, 170), (196, 140, 92)),
        trim=(150, 96, 60),
        window=(50, 60, 70),
        window_lit=None,
        window_shape="tall",
        floor_height=3.4,
        floors_scale=0.6,
        awnings=((30, 110, 120), (200, 120, 40)),
        sign=SignStyle(case="upper", weight=1.0, width=0.82, boards=((30, 110, 120), (120, 40, 30)),
                       letters=((250, 245, 230), (250, 225, 170))),
        trees="palm",
        tree_density=0.3,
        lamp="classic",
        lamp_density=0.15,
        lamp_glow=False,
        haze=0.35,
    ),
    CityStyle(
        name="old_town",
        description="Pastel plaster at dusk, arched windows, projecting blade signs, slanted letters.",
        time_of_day="dusk",
        sky_top=(60, 70, 130),
        sky_horizon=(240, 160, 120),
        clouds=4,
        cloud_colour=(230, 150, 140),
        light=0.75,
        ground=(150, 136, 124),
        road=(86, 78, 76),
        marking=(220, 214, 200),
        curb=(120, 110, 100),
        walls=((230, 200, 150), (220, 160, 130), (200, 210, 180), (236, 220, 190), (210, 170, 170)),
        trim=(250, 244, 230),
        window=(50, 56, 70),
        window_lit=(255, 214, 140),
        window_shape="arched",
        floor_height=3.6,
        floors_scale=0.7,
        awnings=((120, 30, 40), (40, 70, 40)),
        sign=SignStyle(case="title", weight=0.4, slant=0.22, boards=((240, 230, 205), (60, 40, 30)),
                       letters=((70, 30, 20), (250, 230, 180)), blade="horizontal"),
        trees=None,
        tree_density=0.0,
        lamp="classic",
        lamp_density=0.35,
        lamp_glow=True,
        haze=0.2,
    ),
    CityStyle(
        name="neon",
        description="Night, dark towers with lit windows, glowing signs and vertical stacked blade signs.",
        time_of_day="night",
        sky_top=(8, 10, 26),
        sky_horizon=(40, 36, 70),
        clouds=0,
        cloud_colour=(40, 40, 60),
        light=0.35,
        ground=(60, 60, 68),
        road=(28, 28, 34),
        marking=(170, 170, 150),
        curb=(90, 90, 100),
        walls=((70, 72, 84), (56, 60, 74), (90, 84, 92), (64, 70, 66)),
        trim=(120, 120, 130),
        window=(24, 28, 40),
        window_lit=(255, 220, 150),
        window_shape="grid",
        floor_height=3.2,
        floors_scale=1.6,
        awnings=(),
        sign=SignStyle(case="upper", weight=0.8, boards=((16, 14, 24), (10, 24, 30)),
                       letters=((255, 90, 200), (90, 240, 255)), glow=True, blade="vertical"),
        trees=None,
        tree_density=0.0,
        lamp="modern",
        lamp_density=0.4,
        lamp_glow=True,
        haze=0.1,
    ),
    CityStyle(
        name="nordic",
        description="Overcast winter, pale timber facades, snow-white ground, conifers, light lower-case signs.",
        time_of_day="overcast",
        sky_top=(160, 170, 182),
        sky_horizon=(214, 218, 224),
        clouds=0,
        cloud_colour=(220, 222, 226),
        light=0.85,
        ground=(226, 230, 234),
        road=(104, 108, 114),
        marking=(240, 240, 240),
        curb=(180, 184, 190),
        walls=((196, 60, 44), (230, 200, 120), (200, 210, 214), (70, 90, 110), (236, 232, 220)),
        trim=(250, 250, 248),
        window=(60, 70, 80),
        window_lit=(255, 226, 170),
        window_shape="grid",
        floor_height=3.0,
        floors_scale=0.6,
        awnings=(),
        sign=SignStyle(case="as_is", weight=0.0, width=1.1, spacing=0.06,
                       boards=((250, 250, 250), (30, 40, 50)), letters=((30, 40, 50), (250, 250, 250))),
        trees="conifer",
        tree_density=0.3,
        lamp="modern",
        lamp_density=0.2,
        lamp_glow=True,
        haze=0.45,
    ),
    CityStyle(
        name="tropical",
        description="Bright pastel walls under a vivid sky, palms, bold upper-case signs with outlines.",
        time_of_day="day",
        sky_top=(40, 130, 230),
        sky_horizon=(170, 220, 245),
        clouds=8,
        cloud_colour=(255, 255, 255),
        light=1.1,
        ground=(200, 196, 180),
        road=(84, 88, 92),
        marking=(250, 250, 240),
        curb=(230, 220, 120),
        walls=((250, 180, 190), (150, 220, 200), (250, 220, 120), (160, 200, 250), (250, 250, 240)),
        trim=(255, 255, 255),
        window=(40, 90, 110),
        window_lit=None,
        window_shape="tall",
        floor_height=3.2,
        floors_scale=0.8,
        awnings=((230, 90, 60), (40, 160, 150), (250, 200, 40)),
        sign=SignStyle(case="upper", weight=1.6, boards=((255, 255, 255), (20, 120, 150)),
                       letters=((230, 60, 80), (255, 250, 230)), outline=(20, 30, 40)),
        trees="palm",
        tree_density=0.4,
        lamp=None,
        lamp_density=0.0,
        lamp_glow=False,
        haze=0.2,
    ),
    CityStyle(
        name="modernist",
        description="Glass and concrete towers with ribbon windows, wide letter-spaced upper-case signs.",
        time_of_day="day",
        sky_top=(120, 160, 200),
        sky_horizon=(210, 222, 232),
        clouds=3,
        cloud_colour=(240, 242, 246),
        light=0.95,
        ground=(190, 190, 186),
        road=(64, 66, 70),
        marking=(240, 240, 240),
        curb=(160, 160, 156),
        walls=((200, 200, 196), (170, 176, 180), (120, 130, 140), (220, 216, 206)),
        trim=(90, 96, 104),
        window=(90, 130, 160),
        window_lit=None,
        window_shape="ribbon",
        floor_height=3.6,
        floors_scale=1.8,
        awnings=(),
        sign=SignStyle(case="upper", weight=0.0, width=1.25, spacing=0.18,
                       boards=((20, 22, 26), (240, 240, 236)), letters=((240, 240, 236), (20, 22, 26))),
        trees="round",
        tree_density=0.15,
        lamp="modern",
        lamp_density=0.3,
        lamp_glow=False,
        haze=0.3,
    ),
    CityStyle(
        name="garden",
        description="Low houses among many trees on a summer afternoon, slanted hand-painted signs.",
        time_of_day="day",
        sky_top=(110, 170, 230),
        sky_horizon=(210, 232, 240),
        clouds=10,
        cloud_colour=(250, 250, 252),
        light=1.0,
        ground=(170, 180, 150),
        road=(90, 90, 88),
        marking=(240, 240, 230),
        curb=(150, 150, 140),
        walls=((240, 236, 220), (200, 170, 140), (180, 200, 170), (230, 210, 190)),
        trim=(90, 70, 50),
        window=(60, 80, 90),
        window_lit=None,
        window_shape="grid",
        floor_height=3.0,
        floors_scale=0.45,
        awnings=((60, 120, 60), (180, 80, 40)),
        sign=SignStyle(case="as_is", weight=0.8, slant=0.28, width=0.95,
                       boards=((60, 100, 50), (250, 246, 230)), letters=((250, 246, 230), (90, 50, 30))),
        trees="round",
        tree_density=0.7,
        lamp="classic",
        lamp_density=0.1,
        lamp_glow=False,
        haze=0.2,
    ),
    CityStyle(
        name="industrial",
        description="Red brick and steel under grey skies, stencil-like extended upper-case signs.",
        time_of_day="overcast",
        sky_top=(130, 134, 140),
        sky_horizon=(190, 190, 188),
        clouds=0,
        cloud_colour=(200, 200, 200),
        light=0.8,
        ground=(140, 136, 130),
        road=(60, 60, 60),
        marking=(230, 200, 60),
        curb=(110, 106, 100),
        walls=((130, 56, 40), (110, 60, 50), (96, 96, 96), (150, 80, 56)),
        trim=(60, 64, 70),
        window=(70, 80, 84),
        window_lit=None,
        window_shape="tall",
        floor_height=4.0,
        floors_scale=0.9,
        awnings=(),
        sign=SignStyle(case="upper", weight=1.2, width=1.2, spacing=0.1,
                       boards=((230, 200, 60), (40, 42, 46)), letters=((30, 30, 30), (230, 200, 60))),
        trees=None,
        tree_density=0.0,
        lamp="modern",
        lamp_density=0.25,
        lamp_glow=False,
        haze=0.5,
    ),
    CityStyle(
        name="boulevard",
        description="Cream stone facades in golden-hour light, black signs with gilt letters, plane trees.",
        time_of_day="golden",
        sky_top=(90, 130, 190),
        sky_horizon=(250, 210, 150),
        clouds=5,
        cloud_colour=(252, 226, 190),
        light=0.95,
        ground=(196, 184, 160),
        road=(80, 76, 72),
        marking=(240, 234, 220),
        curb=(170, 160, 140),
        walls=((236, 222, 196), (226, 210, 180), (240, 232, 214)),
        trim=(200, 186, 160),
        window=(56, 60, 66),
        window_lit=None,
        window_shape="tall",
        floor_height=3.5,
        floors_scale=0.9,
        awnings=((30, 30, 30), (120, 20, 30)),
        sign=SignStyle(case="upper", weight=0.6, spacing=0.12, boards=((20, 20, 22),),
                       letters=((220, 180, 90),)),
        trees="round",
        tree_density=0.45,
        lamp="classic",
        lamp_density=0.2,
        lamp_glow=False,
        haze=0.3,
    ),
)

#: Every style, keyed by name.
STYLES: dict[str, CityStyle] = {s.name: s for s in _STYLES}
#: The training look.
DEFAULT_STYLE: str = "harbor"
#: Styles for training (one city look, like the paper's New York routes).
TRAIN_STYLES: tuple[str, ...] = (DEFAULT_STYLE,)
#: Styles held out for visual-OOD evaluation (nine, like the paper's nine cities).
HELD_OUT_STYLES: tuple[str, ...] = tuple(s.name for s in _STYLES if s.name != DEFAULT_STYLE)
#: Group names accepted wherever a style name is.
STYLE_GROUPS: dict[str, tuple[str, ...]] = {
    "train": TRAIN_STYLES,
    "held_out": HELD_OUT_STYLES,
    "all": tuple(STYLES),
}


def resolve_styles(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Style names for a style argument: a name, a group name or a list of names.

    Raises:
        ValueError: An unknown name (the message lists the known ones), or a
            value that is neither a name nor a list.

    Example:
        >>> resolve_styles("neon"), len(resolve_styles("held_out"))
        (('neon',), 9)
    """
    if isinstance(spec, str):
        items = [spec]
    elif isinstance(spec, (list, tuple)):
        items = list(spec)
    else:
        raise ValueError(f"a city style is a name, a group name or a list of names, got {spec!r}")
    out: list[str] = []
    for item in items:
        if isinstance(item, str) and item in STYLE_GROUPS:
            out.extend(STYLE_GROUPS[item])
        elif isinstance(item, str) and item in STYLES:
            out.append(item)
        else:
            raise ValueError(
                f"unknown city style {item!r}; styles: {', '.join(STYLES)}; "
                f"groups: {', '.join(STYLE_GROUPS)}"
            )
    if not out:
        raise ValueError("no city style given")
    return tuple(dict.fromkeys(out))
