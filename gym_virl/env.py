"""The V-IRL street-navigation env (``VIRL-L-v0`` text, ``VIRL-VL-v0`` image)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gengym_core.chat import Message, assistant_message, copy_messages, user_message
from gengym_core.spaces import FreeText, prompt_space, to_prompt_text
from gym_virl.prompts import (
    build_prompt,
    current_observation_line,
    history_observation_line,
    oracle_answer_text,
    prompt_header,
    retry_prompt,
)
from gym_virl.render.styles import DEFAULT_STYLE, resolve_styles
from gym_virl.routes import (
    RAIL_RULES,
    ROUTE_PRESETS,
    RailPoint,
    Route,
    RouteConfig,
    reference_route_for,
    route_for,
)
from gym_virl.sampling import random_answer, wrong_answer
from gym_virl.verifier import VirlRewards, judge_answer, recognition_correct

#: Upper bound on a prompt's length. Routes are bounded (at most 8 turns for
#: generated routes, :data:`gym_virl.realdata.MAX_RAIL_POINTS` rail points
#: for real data) and so are the lines they produce, so every prompt fits.
MAX_PROMPT_CHARS: int = 65_536
#: Longest raw answer kept in chat turns.
MAX_ANSWER_IN_CHAT: int = 8_192
#: Reset option keys.
RESET_OPTIONS: tuple[str, ...] = ("route", "city_style", "action_space")
#: Info keys of the rail point just judged, after a step (the same keys without
#: the prefix describe the point the agent is at).
JUDGED_INFO_KEYS: tuple[str, ...] = ("judged_gold_action", "judged_rail_index", "judged_is_key_point",
                                     "judged_at_intersection", "judged_instruction_index")


@dataclass(frozen=True)
class VirlConfig:
    """Everything that defines a V-IRL env (the ``gym.make`` keyword arguments).

    Attributes:
        modality: ``"text"`` (VIRL-L) or ``"image"`` (VIRL-VL); set by the env id.
        action_space: ``"absolute"`` (8 compass words) or ``"relative"``
            (left, right, slightly left, slightly right: the rule variant).
        split: ``"train"`` or ``"test"`` routes; train and test never share a
            route. With ``data_dir``, also ``"all"`` (every route of the file,
            the default there).
        city_seed: Seed of the generated city.
        city_style: A style name, a group (``"train"``, ``"held_out"``,
            ``"all"``) or a list of names; with several, each episode draws one.
        route_length: ``"short"`` (V-IRL: 40-150 m, 1-2 turns) or ``"long"``
            (3-8 turns).
        train_routes: Number of routes in the train split.
        test_routes: Number of routes in the test split.
        view_size: Side of each of the four views in pixels (image mode).
        tries_per_point: Verified answers allowed per rail point; the call
            after that truncates the episode.
        rewards: Reward for each verdict.
        data_dir: Folder with real V-IRL route data; replaces the generated
            city (see :mod:`gym_virl.realdata`).
        rail_rules: How the rail, gold actions and turn words are made:
            ``"reference"`` as the paper's code does (forward points at 1/5
            .. 4/5 of each leg, dropped at random each episode; a heading
            drawn each episode where the route gives none; always
            ``turn_direction(x)`` at a key point; relative words from the
            turn's angle), or ``"gengym"`` (forward points at 1/6 .. 5/6,
            fixed per route; a first turn of 45 or 90 degrees;
            ``forward()`` where a key point keeps the compass word; relative
            words from compass steps). ``None`` (default): reference with
            ``data_dir``, gengym on generated cities, whose turns the
            compass words then describe exactly.
    """

    modality: str = "text"
    action_space: str = "absolute"
    split: str | None = None
    city_seed: int = 0
    city_style: str | tuple[str, ...] = DEFAULT_STYLE
    route_length: str = "short"
    train_routes: int = 1000
    test_routes: int = 200
    view_size: int = 640
    tries_per_point: int = 2
    rewards: VirlRewards = field(default_factory=VirlRewards)
    data_dir: str | None = None
    rail_rules: str | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        if self.modality not in ("text", "image"):
            raise ValueError(f"modality must be 'text' or 'image', got {self.modality!r}")
        if self.action_space not in ("absolute", "relative"):
            raise ValueError(f"action_space must be 'absolute' or 'relative', got {self.action_space!r}")
        allowed = ("train", "test", "all") if self.data_dir else ("train", "test")
        if self.split is not None and self.split not in allowed:
            raise ValueError(f"split must be one of {allowed}, got {self.split!r}")
        if not isinstance(self.city_seed, (int, np.integer)) or self.city_seed < 0:
            raise ValueError(f"city_seed must be a non-negative integer, got {self.city_seed!r}")
        resolve_styles(self.city_style)
        if self.route_length not in ROUTE_PRESETS:
            raise ValueError(f"route_length must be one of {tuple(ROUTE_PRESETS)}, got {self.route_length!r}")
        for name, low, high in (("train_routes", 1, None), ("test_routes", 1, None),
                                ("view_size", 16, 2048), ("tries_per_point", 1, None)):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                    or value < low or (high is not None and value > high)):
                bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
                raise ValueError(f"{name} must be a whole number {bounds}, got {value!r}")
        if not isinstance(self.rewards, VirlRewards):
            raise ValueError("rewards must be a VirlRewards")
        if self.rail_rules is not None and self.rail_rules not in RAIL_RULES:
            raise ValueError(f"rail_rules must be one of {RAIL_RULES} or None, got {self.rail_rules!r}")

    @property
    def effective_rail_rules(self) -> str:
        """The rail rules in use: ``rail_rules``, or reference with ``data_dir`` and gengym without."""
        if self.rail_rules is not None:
            return self.rail_rules
        return "reference" if self.data_dir else "gengym"

    @property
    def effective_split(self) -> str:
        """The split in use: ``split``, or its default (train; all for real data)."""
        if self.split is not None:
            return self.split
        return "all" if self.data_dir else "train"

    @property
    def route_config(self) -> RouteConfig:
        """The route statistics for :attr:`route_length`."""
        return ROUTE_PRESETS[self.route_length]


def make_config(**kwargs: Any) -> VirlConfig:
    """A validated :class:`VirlConfig` from keyword arguments.

    Accepts ``rewards`` as a :class:`VirlRewards` or a dict of its fields and
    ``city_style`` as a list. Unknown names raise ``TypeError`` listing the
    known ones.
    """
    names = {f.name for f in dataclasses.fields(VirlConfig)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise TypeError(f"unknown VIRL env argument(s) {unknown}; known: {sorted(names)}")
    if isinstance(kwargs.get("rewards"), dict):
        fields = {f.name for f in dataclasses.fields(VirlRewards)}
        bad = sorted(set(kwargs["rewards"]) - fields, key=str)
        if bad:
            raise TypeError(f"unknown reward name(s) {bad}; known: {sorted(fields)}")
        kwargs["rewards"] = VirlRewards(**kwargs["rewards"])
    if isinstance(kwargs.get("city_style"), list):
        kwargs["city_style"] = tuple(kwargs["city_style"])
    if kwargs.get("data_dir") is not None:
        kwargs["data_dir"] = str(kwargs["data_dir"])
    config = VirlConfig(**kwargs)
    config.validate()
    return config


class VirlEnv(gym.Env):
    """Follow street-navigation instructions through a city, one rail point at a time.

    ## Description

    The V-IRL navigation task of "SFT Memorizes, RL Generalizes" (Chu et
    al., 2025), offline. A route leads from a start place through one or more
    turning intersections to a destination; the agent rides a fixed rail of
    positions (the key points plus interpolated points along each leg) and
    at each position must name the one right action. Cities, routes,
    instructions and street views are generated (a pure function of the city
    seed and the route), or loaded from real V-IRL data with ``data_dir``.
    ``rail_rules`` chooses how the rail and its gold actions are laid out:
    as the paper's code does (the default for real data: forward points and,
    where the route gives none, the starting heading drawn anew each
    episode), or gengym's fixed rails (the default for generated cities).

    ## Action Space

    ``FreeText``: the model's raw answer, any string (anything else is judged
    ``illegal``; the transcript keeps its ``repr``). It should be a JSON
    object with ``current observation``, ``current instruction`` and
    ``action`` (only ``action`` is required, as in the paper's code); the
    action is one of ``forward()``, ``turn_direction(x)`` and ``stop()``,
    where ``x`` is a compass word (``north`` ... ``northwest``) in the
    absolute action space, or ``left``, ``right``, ``slightly left``,
    ``slightly right`` in the relative one.

    ## Observation Space

    ``Dict({"text": Text(65536)})`` in VIRL-L, plus
    ``"image": Box(0, 255, (2S+g, 2S+g, 3), uint8)`` in VIRL-VL: four
    ``S x S`` street views (front, right, back, left; 2x2, separated by a
    black gap ``g``). The text holds the task, the numbered instructions,
    the action space, the observations and actions so far, the current
    observation (text mode: route landmarks in sight and on which side, and
    whether the agent is at an intersection; image mode: a pointer to the
    views and whether it is at an intersection), the answer format, and after
    a wrong answer the verifier's feedback.

    ## Rewards

    The paper's table: +1 right action (the agent moves on, whatever the
    answer says about the intersection); -1 wrong action; -1.5 wrong action
    with a false claim about being at an intersection (judged against the
    rail point's flag); -1 unreadable answer or an action outside the action
    space; -1 for calling again after the tries at a rail point are used up.
    All set by ``rewards``. ``docs/reference-differences.md`` lists where
    judging differs from the paper's code.

    ## Episode End

    Terminated with success when ``stop()`` is answered at the destination
    (every rail point solved). Truncated when an answer is given after
    ``tries_per_point`` wrong answers at one rail point.

    ## Info

    After ``reset`` and every ``step``, describing the observation returned
    with it (the rail point the agent is at now): ``gold_action``,
    ``rail_index``, ``is_key_point``, ``at_intersection``,
    ``instruction_index`` (1-based); and ``rail_length``, ``route_id``,
    ``route_index``, ``split``, ``city_style``, ``action_space``,
    ``rail_rules`` and ``success``. After ``step`` also the answer's
    ``verdict`` (one of ``correct``, ``wrong_action``,
    ``wrong_intersection``, ``illegal``, ``budget``), ``feedback``,
    ``attempt`` (1-based at the judged rail point) and ``correct`` (this
    answer was right); the judged rail point's fields as ``judged_gold_action``,
    ``judged_rail_index``, ``judged_is_key_point``,
    ``judged_at_intersection`` and ``judged_instruction_index``; in image
    mode ``recognition_correct`` (whether the answer's observation named
    exactly the route landmarks in view; ``None`` when it could not be
    read).

    ## Arguments

    See :class:`VirlConfig`. ``action_space``: ``"absolute"`` (default) or
    ``"relative"`` (the rule variant). ``split``: ``"train"`` (default, 1000
    routes) or ``"test"`` (200 routes; never a route of the train split).
    ``city_seed``: which generated city (default 0). ``city_style``: one of
    ``harbor`` (the training look), ``desert``, ``old_town``, ``neon``,
    ``nordic``, ``tropical``, ``modernist``, ``garden``, ``industrial``,
    ``boulevard``, a group (``"held_out"``: the nine non-training looks;
    ``"all"``), or a list, drawn per episode. ``route_length``: ``"short"``
    (V-IRL's 40-150 m, 1-2 turns) or ``"long"`` (3-8 turns).
    ``view_size``: pixels per view (default 640, like the reference).
    ``tries_per_point`` (default 2), ``rewards`` (a ``VirlRewards`` or dict),
    ``data_dir`` (real V-IRL data), ``rail_rules`` (``"reference"`` or
    ``"gengym"``; default: reference with ``data_dir``, gengym without),
    ``render_mode`` (``"rgb_array"``: the
    street-view grid, in both modes; ``"ansi"``: the prompt and a status
    line). ``reset(options=...)`` takes ``"route"`` (route N of the split; a
    clear error when out of range), ``"city_style"`` and ``"action_space"``.

    Image mode keeps the facade and sign textures it draws in per-process
    caches of at most 256 MB and 48 MB (the city's look is drawn once, not
    at every step); ``gym_virl.render.set_texture_cache_budget`` sets other
    limits, for instance in each worker of an async vector env.

    ## Version History

    * v0: initial release.
    * v0, revised (same id; not yet released): real data is laid out and
      labelled as the paper's code does (``rail_rules="reference"``; the
      earlier rails are ``rail_rules="gengym"``, still the default on
      generated cities). Answers are judged by the paper's table: only
      ``action`` is required and the right action earns +1 whatever the
      intersection claim. The info of ``step`` describes the returned
      observation (it used to describe the point just judged, now under
      ``judged_*``).
    """

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 2}

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.config = make_config(**kwargs)
        self._rail_rules = self.config.effective_rail_rules
        self._dataset = None
        if self.config.data_dir is not None:
            from gym_virl.realdata import load_dataset

            self._dataset = load_dataset(self.config.data_dir)
        self.action_space = FreeText()
        obs: dict[str, spaces.Space] = {"text": prompt_space(MAX_PROMPT_CHARS)}
        if self.config.modality == "image":
            from gym_virl.render.streetview import grid_shape

            obs["image"] = spaces.Box(0, 255, grid_shape(self.config.view_size), np.uint8)
        self.observation_space = spaces.Dict(obs)
        self._route: Route | None = None
        self._image: np.ndarray | None = None
        self._done = True

    # ------------------------------------------------------------------ routes

    def num_routes(self, split: str | None = None, action_space: str | None = None) -> int:
        """Number of routes in ``split`` (default: the env's split).

        With real data, routes whose turns the relative action space cannot
        express are left out of its splits, so the count depends on
        ``action_space`` (default: the env's).
        """
        split = split or self.config.effective_split
        if self._dataset is not None:
            return len(self._dataset.split_indices(split, action_space or self.config.action_space,
                                                   self.config.effective_rail_rules))
        return self.config.train_routes if split == "train" else self.config.test_routes

    def _load_route(self, index: int, action_space: str) -> Route:
        """The episode's route; under the reference rules its rail is drawn with ``np_random``."""
        split, rules = self.config.effective_split, self.config.effective_rail_rules
        if self._dataset is not None:
            return self._dataset.route(split, index, action_space, rules, self.np_random)
        if rules == "reference":
            return reference_route_for(self.config.city_seed, split, index, self.np_random, self.config.route_config)
        return route_for(self.config.city_seed, split, index, self.config.route_config)

    # ------------------------------------------------------------------ gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options is not None and not isinstance(options, Mapping):
            raise ValueError(f"reset options must be a dict, got {type(options).__name__}")
        options = dict(options or {})
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; known: {list(RESET_OPTIONS)}")
        action_space = options.get("action_space", self.config.action_space)
        if action_space not in ("absolute", "relative"):
            raise ValueError(f"action_space must be 'absolute' or 'relative', got {action_space!r}")
        styles = resolve_styles(options.get("city_style", self.config.city_style))
        n_routes = self.num_routes(action_space=action_space)
        if n_routes == 0:
            # Only real data can leave a split empty (few routes, or none the relative
            # action space can express).
            why = (" (routes with a 135 or 180 degree turn have no relative actions)"
                   if action_space == "relative" else "")
            raise ValueError(
                f"the {self.config.effective_split} split of {self.config.data_dir} has no routes "
                f"in the {action_space} action space{why}; try split='all'"
            )
        if "route" in options:
            index = options["route"]
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise ValueError(f"route must be a whole number (an index into the split), got {index!r}")
            if not 0 <= index < n_routes:
                raise ValueError(
                    f"route {index!r} is out of range: the {self.config.effective_split} split has "
                    f"{n_routes} routes (0..{n_routes - 1})"
                )
        else:
            index = int(self.np_random.integers(n_routes))
        style = styles[int(self.np_random.integers(len(styles)))] if len(styles) > 1 else styles[0]
        self._action_space_name = action_space
        self._style = "real" if self._dataset is not None else style
        self._route_index = int(index)
        self._route = self._load_route(int(index), action_space)
        if self._dataset is not None and self.config.modality == "image":
            self._dataset.check_imagery(self._route)  # fail now, naming the missing panorama
        self._header = prompt_header(self._route, action_space)
        self._landmark_names = tuple(n for n in self._route.landmarks if n)
        self._rail_index = 0
        self._attempt = 0
        self._history: list[str] = []
        self._transcript: list[dict[str, Any]] = []
        self._wrong: list[tuple[str, str]] = []  # (answer, feedback) at this rail point
        self._done = False
        self._success = False
        self._last_answer: str | None = None
        self._image = None
        self._prompt = self._make_prompt()
        return self._observation(), self._route_info()

    def step(self, action: Any):
        if self._route is None or self._done:
            raise RuntimeError("the episode has ended (or never started); call reset() first")
        answer = action if isinstance(action, str) else repr(action)
        point = self._route.rail[self._rail_index]
        gold = point.gold_action(self._action_space_name)
        prompt = self._prompt
        self._attempt += 1
        terminated = truncated = False
        recognised: bool | None = None
        if self._attempt > self.config.tries_per_point:
            verdict = "budget"
            feedback = (
                f"No tries left at this position ({self.config.tries_per_point} allowed); "
                "the episode ends."
            )
            truncated = True
        else:
            # The action itself is judged: anything but a string is illegal (its repr,
            # kept for the transcript, is not the model's answer).
            judgement = judge_answer(action, gold, point.observed.at_intersection,
                                     self._action_space_name)
            verdict, feedback = judgement.verdict, judgement.feedback
            in_view = tuple(name for name, _ in point.observed.landmarks)
            recognised = recognition_correct(judgement.observation, in_view, self._landmark_names)
        reward = self.config.rewards.for_verdict(verdict)
        judged_index = self._rail_index
        judged = self._point_values(judged_index, point, gold)
        answer_info: dict[str, Any] = {
            "verdict": verdict,
            "feedback": feedback,
            "attempt": self._attempt,
            "correct": verdict == "correct",
        }
        if self.config.modality == "image":
            answer_info["recognition_correct"] = recognised
        self._transcript.append(
            {
                "prompt": prompt,
                "answer": answer,
                "reward": reward,
                "verdict": verdict,
                "feedback": feedback,
                "rail_index": self._rail_index,
                "gold_action": gold,
                "attempt": self._attempt,
                "recognition_correct": recognised,
            }
        )
        self._last_answer = answer
        if verdict == "correct":
            if point.action == "stop":
                terminated = True
                self._success = True
            else:
                step_no = len(self._history) // 2 + 1
                self._history.append(f"O_{step_no}: {history_observation_line(point, self.config.modality)}")
                self._history.append(f"A_{step_no}: {gold}")
                self._rail_index += 1
                self._attempt = 0
                self._wrong = []
                self._image = None
        elif verdict != "budget":
            self._wrong.append((answer, feedback))
        self._done = terminated or truncated
        if not self._done:
            self._prompt = self._make_prompt()
        # The info goes with the observation returned: its point fields describe the
        # point the agent is at now; the point just judged is under judged_*.
        info = self._route_info(judged if self._rail_index == judged_index else None)
        info.update(zip(JUDGED_INFO_KEYS, judged, strict=True))
        info.update(answer_info)
        return self._observation(), reward, terminated, truncated, info

    def render(self):
        if self.render_mode == "ansi":
            return self._ansi()
        if self.render_mode == "rgb_array":
            return self._current_image().copy()
        return None

    # ---------------------------------------------------------------- protocol

    def oracle_answer(self) -> str:
        """The answer the verifier accepts now (truthful observation, gold action)."""
        if self._route is None or self._done:
            raise RuntimeError("no oracle answer: the episode has ended (or never started)")
        point = self._route.rail[self._rail_index]
        return oracle_answer_text(self._route, point, self._action_space_name)

    def sample_wrong_answer(self, rng: np.random.Generator, verdict: str | None = None) -> str:
        """A well-formed answer the verifier rejects now with ``verdict``.

        ``verdict`` is ``wrong_action``, ``wrong_intersection`` or ``illegal``;
        ``None`` picks one at random. The answer is verified before it is
        returned. Randomness comes from ``rng`` only, never from ``np_random``.

        Raises:
            ValueError: The verdict cannot occur here.
            RuntimeError: Before ``reset`` or after the episode ended.
        """
        if self._route is None or self._done:
            raise RuntimeError("no task is open: call reset() first")
        point = self._route.rail[self._rail_index]
        return wrong_answer(self._route, point, self._action_space_name,
                            np.random.default_rng(rng), verdict)

    def sample_random_answer(self, rng: np.random.Generator) -> str:
        """A well-formed answer drawn at random with ``rng`` (the random baseline)."""
        if self._route is None:
            raise RuntimeError("call reset() first")
        return random_answer(self._route, self._action_space_name, np.random.default_rng(rng))

    def chat_messages(self) -> list[Message]:
        """The conversation for the current rail point.

        The paper puts the history in the prompt text, so each rail point is
        a fresh user turn (with the street-view image placeholder in image
        mode). Wrong answers at this rail point follow as assistant turns,
        each answered by a user turn with the verifier's feedback. After the
        episode ended: the final rail point's conversation with the last
        answer.
        """
        if self._route is None:
            raise RuntimeError("call reset() first")
        n_img = 1 if self.config.modality == "image" else 0
        messages = [user_message(self._first_prompt, num_images=n_img)]
        for answer, feedback in self._wrong:
            messages.append(assistant_message(answer[:MAX_ANSWER_IN_CHAT]))
            messages.append(user_message(retry_prompt(feedback)))
        if self._done and self._last_answer is not None:
            messages.append(assistant_message(self._last_answer[:MAX_ANSWER_IN_CHAT]))
        return copy_messages(messages)

    def chat_images(self) -> list[np.ndarray]:
        """The current street-view grid in image mode; nothing in text mode."""
        if self._route is None:
            raise RuntimeError("call reset() first")
        return [self._current_image().copy()] if self.config.modality == "image" else []

    def transcript(self) -> list[dict[str, Any]]:
        """Every verified turn so far (a copy)."""
        return [dict(t) for t in getattr(self, "_transcript", [])]

    # ---------------------------------------------------------------- internals

    def _make_prompt(self) -> str:
        assert self._route is not None
        point = self._route.rail[self._rail_index]
        step_no = len(self._history) // 2 + 1
        current = current_observation_line(point, self.config.modality)
        first = build_prompt(self._header, self._history, current, step_no)
        self._first_prompt = first
        if not self._wrong:
            return first
        answer, feedback = self._wrong[-1]
        note = f"Your answer: {to_prompt_text(answer, 300)}\n{retry_prompt(feedback)}"
        return build_prompt(self._header, self._history, current, step_no, feedback=note)

    def _observation(self) -> dict[str, Any]:
        obs: dict[str, Any] = {"text": self._prompt}
        if self.config.modality == "image":
            # A fresh array each time: callers may keep or modify what they get.
            obs["image"] = self._current_image().copy()
        return obs

    def _current_image(self) -> np.ndarray:
        if self._route is None:
            raise RuntimeError("call reset() first")
        if self._image is None:
            self._image = self._render_point(self._rail_index)
        return self._image

    def _render_point(self, index: int) -> np.ndarray:
        """The street-view grid at rail point ``index`` of the current route."""
        if self._dataset is not None:
            return self._dataset.render_point(self._route, index, self.config.view_size)
        point = self._route.rail[index]
        from gym_virl.city.generate import city_for_seed
        from gym_virl.render.streetview import render_views

        city = city_for_seed(self.config.city_seed)
        return render_views(city, self._style, point.position, point.heading, self.config.view_size)

    def _route_info(self, here: tuple[Any, ...] | None = None) -> dict[str, Any]:
        """The route's info keys and those of the rail point the agent is at
        (``here``: their values, when already known)."""
        assert self._route is not None
        gold, index, key_point, at_intersection, instruction = here or self._point_values(self._rail_index)
        return {
            "route_id": self._route.route_id,
            "route_index": self._route_index,
            "split": self.config.effective_split,
            "city_style": self._style,
            "action_space": self._action_space_name,
            "rail_rules": self._rail_rules,
            "gold_action": gold,
            "rail_index": index,
            "is_key_point": key_point,
            "at_intersection": at_intersection,
            "instruction_index": instruction,
            "rail_length": len(self._route.rail),
            "success": self._success,
        }

    def _point_values(self, index: int, point: RailPoint | None = None, gold: str | None = None) -> tuple[Any, ...]:
        """Gold action, index, key point?, at an intersection?, instruction number of rail point ``index``."""
        assert self._route is not None
        point = point or self._route.rail[index]
        return (gold or point.gold_action(self._action_space_name), index, point.key_point is not None,
                point.observed.at_intersection, point.instruction + 1)

    def _ansi(self) -> str:
        if self._route is None:
            return "(not reset)"
        status = (
            f"route {self._route.route_id} | style {self._style} | rail point "
            f"{self._rail_index + 1}/{len(self._route.rail)} | attempt {self._attempt} | "
            f"{'done, success' if self._success else ('done' if self._done else 'running')}"
        )
        return f"{self._prompt}\n\n{status}\n"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_image"] = None  # re-rendered on demand: a pure function of the state
        return state

