"""Synthetic cities: street networks, buildings and named places."""

from gym_virl.city.generate import (
    Building,
    City,
    CityConfig,
    FurnitureSlot,
    Place,
    Street,
    city_for_seed,
    generate_city,
)
from gym_virl.city.names import MAX_NAME_CHARS, PLACE_TYPES, make_place_name

__all__ = [
    "Building",
    "City",
    "CityConfig",
    "FurnitureSlot",
    "MAX_NAME_CHARS",
    "PLACE_TYPES",
    "Place",
    "Street",
    "city_for_seed",
    "generate_city",
    "make_place_name",
]
