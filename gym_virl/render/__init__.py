"""Street views of generated cities: styles, textures and the renderer."""

from gym_virl.render.streetview import (
    VIEW_NAMES,
    SignRecord,
    grid_shape,
    render_view,
    render_views,
    views_to_grid,
)
from gym_virl.render.styles import (
    DEFAULT_STYLE,
    HELD_OUT_STYLES,
    STYLES,
    TRAIN_STYLES,
    CityStyle,
    SignStyle,
    resolve_styles,
)
from gym_virl.render.textures import set_texture_cache_budget, texture_cache_info

__all__ = [
    "DEFAULT_STYLE",
    "HELD_OUT_STYLES",
    "STYLES",
    "TRAIN_STYLES",
    "VIEW_NAMES",
    "CityStyle",
    "SignRecord",
    "SignStyle",
    "grid_shape",
    "render_view",
    "render_views",
    "resolve_styles",
    "set_texture_cache_budget",
    "texture_cache_info",
    "views_to_grid",
]
