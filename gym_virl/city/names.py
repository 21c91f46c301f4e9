"""Place types and plausible made-up place names.

A generated city holds places of the 20 V-IRL place types. Each gets a name
built from small word lists written for gengym: a family name, a colour, a
tree, a street-ish word, joined by a pattern that suits the type ("Okafor &
Lind Pharmacy", "Blue Heron Cafe", "Juniper Court Library"). Names are plain
ASCII (the prompt space is ASCII and Pillow's embedded font has no other
glyphs), at most :data:`MAX_NAME_CHARS` characters so that they fit a shop
sign, and never repeat within a city: a landmark name must pick out exactly
one place.
"""

from __future__ import annotations

import numpy as np

#: The 20 V-IRL place types.
PLACE_TYPES: tuple[str, ...] = (
    "bank",
    "restaurant",
    "supermarket",
    "bakery",
    "cafe",
    "pharmacy",
    "hospital",
    "spa",
    "convenience store",
    "school",
    "library",
    "park",
    "lodging",
    "laundry",
    "movie theater",
    "book store",
    "clothing store",
    "jewelry store",
    "gym",
    "bar",
)

#: Longest name the generator produces.
MAX_NAME_CHARS: int = 24

_FAMILY = (
    "Abara", "Achebe", "Adler", "Almeida", "Arden", "Baptiste", "Barros", "Bello",
    "Brandt", "Calloway", "Castell", "Chandra", "Corvin", "Dalca", "Delacroix",
    "Dunmore", "Eastwood", "Elling", "Farrow", "Fenwick", "Garza", "Halloran",
    "Hartley", "Ibarra", "Iversen", "Jansen", "Kaplan", "Kessler", "Lindqvist",
    "Lockwood", "Maddox", "Marchetti", "Mendes", "Moreau", "Nakamura", "Novak",
    "Okafor", "Oyelaran", "Pereira", "Quist", "Ramos", "Rinaldi", "Rowan",
    "Sandoval", "Sato", "Sorensen", "Takeda", "Tavares", "Thorne", "Umber",
    "Valdez", "Varga", "Wexler", "Whitlock", "Yamada", "Zeller",
)
_COLOUR = (
    "Amber", "Blue", "Copper", "Crimson", "Golden", "Green", "Indigo", "Ivory",
    "Jade", "Lilac", "Olive", "Orange", "Rose", "Ruby", "Saffron", "Silver",
    "Teal", "Violet", "White", "Scarlet",
)
_NATURE = (
    "Acorn", "Aspen", "Birch", "Bramble", "Cedar", "Clover", "Cypress", "Elm",
    "Fern", "Harbor", "Hazel", "Heron", "Juniper", "Lark", "Laurel", "Linden",
    "Magnolia", "Maple", "Meadow", "Orchard", "Pebble", "Pine", "Poplar",
    "Quarry", "River", "Sparrow", "Summit", "Thistle", "Willow", "Wren",
)
_PLACE_WORD = (
    "Bridge", "Canal", "Corner", "Court", "Crescent", "Garden", "Gate", "Hill",
    "Lane", "Market", "Mill", "Park", "Square", "Station", "Terrace", "Tower",
)
_QUALITY = (
    "Bright", "Daily", "First", "Fresh", "Grand", "Happy", "Little", "Lucky",
    "Modern", "New", "Old", "Quick", "Royal", "Sunny", "True", "Urban",
)

# Per type: (patterns, type nouns). A pattern's slots: {F} family name,
# {G} a second family name, {C} colour, {N} nature word, {P} place word,
# {Q} quality word, {T} one of the type nouns.
_TYPE_PATTERNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bank": (("{F} {T}", "{P} {T}", "{N} {T}", "{F} & {G} {T}"),
             ("Bank", "Savings", "Trust", "Credit Union")),
    "restaurant": (("{F}'s {T}", "The {C} {N}", "{N} {T}", "{Q} {N} {T}"),
                   ("Kitchen", "Grill", "Bistro", "Diner", "Table")),
    "supermarket": (("{Q} {T}", "{N} {T}", "{F} {T}"),
                    ("Market", "Foods", "Grocers", "Supermarket")),
    "bakery": (("{F}'s {T}", "{C} {N} {T}", "{Q} {T}"),
               ("Bakery", "Bakehouse", "Bread Co", "Patisserie")),
    "cafe": (("{C} {N} {T}", "{T} {F}", "{N} {T}", "{P} {T}"),
             ("Cafe", "Coffee", "Espresso", "Roasters")),
    "pharmacy": (("{F} {T}", "{P} {T}", "{F} & {G} {T}"),
                 ("Pharmacy", "Chemist", "Apothecary", "Drugstore")),
    "hospital": (("{N} {T}", "{F} {T}", "St {F} {T}"),
                 ("Hospital", "Medical Center", "Clinic")),
    "spa": (("{N} {T}", "{C} {N} {T}", "{Q} {T}"),
            ("Spa", "Day Spa", "Wellness", "Bathhouse")),
    "convenience store": (("{Q} {T}", "{P} {T}", "{N} {T}"),
                          ("Mart", "Corner Shop", "Express", "Stop")),
    "school": (("{N} {T}", "{F} {T}", "{P} {T}"),
               ("School", "Academy", "Primary School", "High School")),
    "library": (("{F} {T}", "{P} {T}", "{N} {T}"),
                ("Library", "Public Library", "Reading Room")),
    "park": (("{N} {T}", "{F} {T}", "{C} {N} {T}"),
             ("Park", "Gardens", "Green", "Commons")),
    "lodging": (("{F} {T}", "The {C} {T}", "{N} {P} {T}", "{P} {T}"),
                ("Hotel", "Inn", "Lodge", "Suites", "Hostel")),
    "laundry": (("{Q} {T}", "{C} {T}", "{P} {T}"),
                ("Laundry", "Laundromat", "Wash House", "Dry Cleaners")),
    "movie theater": (("{F} {T}", "The {C} {T}", "{P} {T}"),
                      ("Cinema", "Pictures", "Movie House", "Theater")),
    "book store": (("{F} {T}", "{C} {N} {T}", "{P} {T}"),
                   ("Books", "Bookshop", "Booksellers", "Reads")),
    "clothing store": (("{F} {T}", "{C} {T}", "{Q} {T}"),
                       ("Outfitters", "Apparel", "Tailors", "Clothing", "Boutique")),
    "jewelry store": (("{F} {T}", "{C} {T}", "{F} & {G} {T}"),
                      ("Jewelers", "Jewelry", "Goldsmiths", "Gems")),
    "gym": (("{N} {T}", "{Q} {T}", "{P} {T}"),
            ("Fitness", "Gym", "Athletic Club", "Boxing Club")),
    "bar": (("The {C} {N}", "{F}'s {T}", "{N} {T}", "The {N} & {N2}"),
            ("Bar", "Tavern", "Pub", "Taproom", "Lounge")),
}


def _fill(pattern: str, type_nouns: tuple[str, ...], rng: np.random.Generator) -> str:
    def pick(words: tuple[str, ...]) -> str:
        return words[int(rng.integers(len(words)))]

    family = pick(_FAMILY)
    second = pick(_FAMILY)
    while second == family:
        second = pick(_FAMILY)
    nature = pick(_NATURE)
    nature2 = pick(_NATURE)
    while nature2 == nature:
        nature2 = pick(_NATURE)
    return pattern.format(
        F=family,
        G=second,
        C=pick(_COLOUR),
        N=nature,
        N2=nature2,
        P=pick(_PLACE_WORD),
        Q=pick(_QUALITY),
        T=pick(type_nouns),
    )


def make_place_name(place_type: str, rng: np.random.Generator, taken: set[str]) -> str:
    """A fresh name for a place of ``place_type`` that is not in ``taken``.

    The name is added to ``taken``. Draws only from ``rng``.

    Raises:
        ValueError: ``place_type`` is not one of :data:`PLACE_TYPES`.
        RuntimeError: No unused name was found (the word lists are far
            larger than any generated city, so this signals a bug).

    Example:
        >>> taken = set()
        >>> rng = np.random.default_rng(3)
        >>> names = [make_place_name("cafe", rng, taken) for _ in range(50)]
        >>> len(set(names)) == 50 and all(len(n) <= MAX_NAME_CHARS for n in names)
        True
    """
    if place_type not in _TYPE_PATTERNS:
        raise ValueError(f"unknown place type {place_type!r}; known: {', '.join(PLACE_TYPES)}")
    patterns, nouns = _TYPE_PATTERNS[place_type]
    for _ in range(400):
        name = _fill(patterns[int(rng.integers(len(patterns)))], nouns, rng)
        if len(name) <= MAX_NAME_CHARS and name.lower() not in taken:
            taken.add(name.lower())
            return name
    raise RuntimeError(f"could not find an unused {place_type} name after 400 tries")
