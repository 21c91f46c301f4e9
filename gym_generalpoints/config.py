"""The typed, validated configuration of a GeneralPoints env.

Every field is also a ``gym.make`` keyword argument, so
``gym.make("GeneralPoints-VL-v0", suit_colors="red", face_card_values=[11, 12, 13])``
selects a variant without code. Sequences given as lists (from YAML, JSON or
the command line) are turned into tuples; a ``rewards`` mapping into
:class:`~gym_generalpoints.verifier.GeneralPointsRewards`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gym_generalpoints.cards import DEFAULT_FACE_CARD_VALUES, SUITS_BY_COLOR
from gym_generalpoints.dealing import DealRules
from gym_generalpoints.rendering import CARD_STYLES, parse_color
from gym_generalpoints.verifier import GeneralPointsRewards

MODES: tuple[str, ...] = ("L", "VL")
MAX_HAND_SIZE = 5
MAX_FACE_VALUE = 100
MAX_TARGET = 1_000_000
MAX_IMAGE_SIDE = 4096


@dataclass(frozen=True)
class GeneralPointsConfig:
    """Rules, looks and budget of a GeneralPoints env.

    Attributes:
        mode: ``"L"`` (cards listed in the prompt) or ``"VL"`` (cards only in
            the image observation).
        target: The number a formula must make.
        face_card_values: What J, Q and K count: ``(10, 10, 10)`` is the
            paper's training rule, ``(11, 12, 13)`` its rule variant.
        hand_size: Cards per hand (2-5; the paper uses 4).
        require_face_card: Deal only hands with a J, Q or K (rule-OOD
            evaluation, so that the rule matters).
        suit_colors: Suits dealt: ``"all"``, ``"black"`` (spades, clubs: the
            paper's GP-VL training suits) or ``"red"`` (hearts, diamonds: its
            visual-OOD suits).
        card_style: ``"classic"`` or ``"minimal"`` card faces.
        table_color: Felt colour, a name (``green``, ``blue``, ``burgundy``,
            ``slate``) or ``#rrggbb``.
        image_size: ``(width, height)`` of the table image in pixels, or one
            number for a square.
        position_jitter: 0 puts the cards on a fixed grid (as the reference
            does); up to 1 shifts each card randomly (from ``np_random``) by
            that fraction of the largest shift that keeps cards apart.
        verify_iter: Verified attempts per episode (sequential revision);
            the call after them ends the episode, truncated.
        check_cards: Judge the answer's ``cards`` field. ``None`` (default)
            checks it in ``VL`` mode only: in ``L`` mode the prompt lists the
            cards, and the paper's -1.5 recognition penalty is image-only.
        check_numbers: Judge the answer's ``number`` field. ``None``
            (default) checks it in ``VL`` mode only, as the reference code
            meant to (it computed the field there but never compared it:
            defect 4) and never did in ``L`` mode; ``True`` judges it in
            both modes.
        check_stated_result: Judge a trailing ``= N`` after the formula (a
            false one is a wrong value). ``False`` (default) ignores
            everything from the first ``=`` on, as the reference code does.
        rewards: Reward of each verdict.
        max_echo_chars: Longest part of the previous answer quoted in the next
            observation.
        compact: The compact text format of :mod:`gym_generalpoints.compact`
            (text mode only): a one-line task, ``numbers:formula`` answers,
            short feedback, and revision observations that hold the whole
            episode. Same deals, verifier stages and rewards.
    """

    mode: str = "L"
    target: int = 24
    face_card_values: tuple[int, int, int] = DEFAULT_FACE_CARD_VALUES
    hand_size: int = 4
    require_face_card: bool = False
    suit_colors: str = "all"
    card_style: str = "classic"
    table_color: str = "green"
    image_size: tuple[int, int] = (1200, 1200)
    position_jitter: float = 0.0
    verify_iter: int = 5
    check_cards: bool | None = None
    check_numbers: bool | None = None
    check_stated_result: bool = False
    rewards: GeneralPointsRewards = field(default_factory=GeneralPointsRewards)
    max_echo_chars: int = 1000
    compact: bool = False

    def __post_init__(self) -> None:
        # Accept what YAML, JSON and the CLI produce; store canonical types.
        size = self.image_size
        if isinstance(size, int):
            size = (size, size)
        rewards = self.rewards
        if isinstance(rewards, Mapping):
            names = {f.name for f in dataclasses.fields(GeneralPointsRewards)}
            unknown = sorted(set(rewards) - names, key=str)
            if unknown:
                raise ValueError(
                    f"GeneralPointsConfig: unknown reward name(s) {unknown}; "
                    f"known: {', '.join(sorted(names))}"
                )
            rewards = GeneralPointsRewards(**rewards)
        coerced = {
            "face_card_values": _as_tuple(self.face_card_values),
            "image_size": _as_tuple(size),
            "rewards": rewards,
        }
        for name, value in coerced.items():
            object.__setattr__(self, name, value)
        self.validate()

    def validate(self) -> None:
        """Check every field; raise early with what to change.

        Raises:
            ValueError: A field is out of range or of the wrong kind.
        """

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"GeneralPointsConfig: {message}")

        need(self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}")
        need(
            _is_int(self.target) and abs(self.target) <= MAX_TARGET,
            f"target must be a whole number within +-{MAX_TARGET}, got {self.target!r}",
        )
        need(
            isinstance(self.face_card_values, tuple)
            and len(self.face_card_values) == 3
            and all(_is_int(v) and 1 <= v <= MAX_FACE_VALUE for v in self.face_card_values),
            f"face_card_values must be three whole numbers in 1..{MAX_FACE_VALUE} (J, Q, K), "
            f"got {self.face_card_values!r}",
        )
        need(
            _is_int(self.hand_size) and 2 <= self.hand_size <= MAX_HAND_SIZE,
            f"hand_size must be 2..{MAX_HAND_SIZE}, got {self.hand_size!r}",
        )
        need(isinstance(self.require_face_card, bool), "require_face_card must be true or false")
        need(
            self.suit_colors in SUITS_BY_COLOR,
            f"suit_colors must be one of {tuple(SUITS_BY_COLOR)}, got {self.suit_colors!r}",
        )
        need(
            self.card_style in CARD_STYLES,
            f"card_style must be one of {CARD_STYLES}, got {self.card_style!r}",
        )
        try:
            parse_color(self.table_color)
        except ValueError as err:
            raise ValueError(f"GeneralPointsConfig: table_color: {err}") from None
        need(
            isinstance(self.image_size, tuple)
            and len(self.image_size) == 2
            and all(_is_int(v) and 32 <= v <= MAX_IMAGE_SIDE for v in self.image_size),
            f"image_size must be (width, height) in 32..{MAX_IMAGE_SIDE} pixels, got {self.image_size!r}",
        )
        need(
            isinstance(self.position_jitter, (int, float)) and 0 <= self.position_jitter <= 1,
            f"position_jitter must be in [0, 1], got {self.position_jitter!r}",
        )
        need(
            _is_int(self.verify_iter) and self.verify_iter >= 1,
            f"verify_iter must be a whole number >= 1, got {self.verify_iter!r}",
        )
        need(
            self.check_cards is None or isinstance(self.check_cards, bool),
            "check_cards must be true, false or null",
        )
        need(
            self.check_numbers is None or isinstance(self.check_numbers, bool),
            "check_numbers must be true, false or null",
        )
        need(isinstance(self.check_stated_result, bool), "check_stated_result must be true or false")
        need(
            isinstance(self.rewards, GeneralPointsRewards),
            "rewards must be a GeneralPointsRewards or a mapping of its fields",
        )
        need(isinstance(self.compact, bool), "compact must be true or false")
        need(
            not (self.compact and self.image),
            "compact is a text format: use it with mode L (the image mode asks for JSON answers)",
        )
        need(
            not (self.compact and self.check_cards),
            "compact answers name no cards: leave check_cards unset or false",
        )
        need(
            _is_int(self.max_echo_chars) and 40 <= self.max_echo_chars <= 4000,
            f"max_echo_chars must be 40..4000, got {self.max_echo_chars!r}",
        )

    @property
    def image(self) -> bool:
        """Whether observations carry the table image (``VL`` mode)."""
        return self.mode == "VL"

    @property
    def cards_checked(self) -> bool:
        """Whether the answer's ``cards`` field is judged."""
        return self.image if self.check_cards is None else self.check_cards

    @property
    def numbers_checked(self) -> bool:
        """Whether the answer's ``number`` field is judged."""
        return self.image if self.check_numbers is None else self.check_numbers

    def deal_rules(self) -> DealRules:
        """What a deal under this configuration must satisfy."""
        return DealRules(
            hand_size=self.hand_size,
            target=self.target,
            face_card_values=self.face_card_values,
            suits=SUITS_BY_COLOR[self.suit_colors],
            require_face_card=self.require_face_card,
        )

    def replace(self, **changes: Any) -> GeneralPointsConfig:
        """A copy with some fields changed (validated).

        Raises:
            TypeError: A name is not a field; the message lists the fields.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(
                f"unknown GeneralPoints option(s) {', '.join(unknown)}; "
                f"valid options: {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **changes)


def _as_tuple(value: Any) -> Any:
    """Lists (from YAML, JSON, the CLI) as tuples; anything else as given, for validate()."""
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)):
        return tuple(value)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
