"""The one font gengym draws text with.

Pillow (10.1 and newer, built with FreeType, as its wheels are) embeds a
scalable sans-serif font, so gengym ships no font files of its own and never
looks for fonts on the system: the same Pillow release draws the same pixels
on every machine. Variations of weight, width and slant that the renderers
need (for card indices and shop signs) are made from it with
``stroke_width`` and affine transforms.
"""

from __future__ import annotations

from functools import lru_cache

from PIL import ImageFont


@lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont:
    """The gengym font at ``size`` pixels, loaded once per size.

    Raises:
        RuntimeError: This Pillow has no FreeType support (a source build
            without libfreetype); gengym cannot draw text without it.
    """
    loaded = ImageFont.load_default(size=max(1, int(size)))
    if not isinstance(loaded, ImageFont.FreeTypeFont):
        raise RuntimeError(
            "gengym needs Pillow built with FreeType (the PyPI wheels are); "
            "this Pillow only has a bitmap font"
        )
    return loaded
