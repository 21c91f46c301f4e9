"""The GeneralPoints Gymnasium env: a thin shell around the pure rule modules."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gengym_core.chat import Message, assistant_message, user_message
from gengym_core.spaces import FreeText, prompt_space, to_prompt_text
from gym_generalpoints import compact
from gym_generalpoints.cards import describe_rule, parse_hand
from gym_generalpoints.config import GeneralPointsConfig
from gym_generalpoints.dealing import deal
from gym_generalpoints.prompts import feedback_message, revision_prompt, task_prompt
from gym_generalpoints.rendering import parse_color, render_table, table_background, table_layout
from gym_generalpoints.sampling import random_answer, wrong_answer
from gym_generalpoints.solver import solve
from gym_generalpoints.verifier import Hand, verify

#: Longest prompt observation (characters).
MAX_PROMPT_CHARS = 16_384


@dataclass(frozen=True, slots=True)
class _Turn:
    """One judged (or refused) answer of the episode."""

    prompt: str
    answer: str
    reward: float
    verdict: str
    feedback: str
    attempt: int
    cards_correct: bool | None


class GeneralPointsEnv(gym.Env[dict[str, Any], str]):
    """Make a target number (24) from the numbers of dealt playing cards.

    ## Description

    GeneralPoints is the arithmetic card game of "SFT Memorizes, RL
    Generalizes" (Chu et al., 2025). Each episode deals ``hand_size`` cards
    (4 by default) without replacement from one 52-card deck; only hands that
    can make the target are dealt. The model must answer with a JSON object
    naming the cards (``cards``), what they count (``number``) and a formula
    that uses each card's number exactly once with ``+ - * /`` and
    parentheses and equals the target (``formula``). The ace counts 1, number
    cards their face value, and J, Q, K count 10 each under the training rule
    or 11, 12, 13 under the rule variant; the prompt always states the rule
    in force.

    In text mode (``GeneralPoints-L-v0``) the prompt lists the cards; in image
    mode (``GeneralPoints-VL-v0``) they appear only in a rendered table image
    (1200x1200 by default, felt green, one row of cards) and the model must
    also recognise them.

    Episodes are multi-turn *sequential revision*: a wrong answer is judged,
    and the model tries again, until the answer is correct or the budget of
    ``verify_iter`` verified attempts is spent. The conversation
    (``chat_messages()``: the task, then each answer and a user turn saying
    why it was not accepted) is what the paper's code shows the model, and
    what gengym's trainers show by default; the observation's text is the
    same turn as one self-contained prompt (the task, the previous answer and
    the verifier's feedback), for agents that read one prompt a turn.

    ## Action Space

    ``FreeText()``: any Python string, the model's raw output. Nothing the
    model writes raises: unreadable answers are judged ``illegal``. The JSON
    object is found tolerantly (code fences, prose, trailing commas, single
    quotes); the formula is parsed with a whitelist grammar and evaluated
    exactly with fractions, never with ``eval``.

    ## Observation Space

    ``Dict({"text": Text(16384)})`` in text mode and
    ``Dict({"text": Text(16384), "image": Box(0, 255, (H, W, 3), uint8)})``
    in image mode. ``text`` is printable ASCII: on the first turn the task;
    later the task, the previous answer (sanitised, cut to
    ``max_echo_chars``) and the feedback. ``image`` is the same table image
    on every turn of an episode.

    ## Rewards

    Paper defaults, configurable with ``rewards``: +5 correct; -1 a legal
    formula over exactly the cards' numbers with the wrong value; -2 the
    formula's numbers are not exactly the cards' numbers (unused, repeated
    or foreign) or, where the ``number`` list is judged (image mode by
    default; ``check_numbers``), it does not list them; -1.5 the ``cards``
    list names other cards (image mode); -3 an unreadable answer or an
    illegal formula; -1 for answering after the budget. As in the paper's
    code, what follows ``=`` in the formula is ignored
    (``check_stated_result=True`` judges a false ``= N`` as a wrong value).
    When an answer has several faults the feedback lists all of them and
    the reward is that of the first failing stage in the reference's order:
    wrong cards, illegal, wrong numbers, wrong value. An optional ``prefix``
    reward (off by default) reproduces the reference's +1 for an incomplete
    formula that starts a known solution. ``docs/reference-differences.md``
    lists where judging differs from the paper's code.

    ## Episode End

    Terminated when an answer is correct. Truncated on the call after
    ``verify_iter`` verified attempts (default 5): that answer is not judged
    and earns ``rewards.budget`` (-1). Stepping a finished episode raises
    ``RuntimeError``.

    In vector envs, Gymnasium's default ``NEXT_STEP`` autoreset spends the
    call after an episode's end on the reset (its action is ignored), and
    until then ``oracle_answer()`` raises as the episode is over. For
    continuous play pass
    ``vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}``.

    ## Info

    After ``reset`` and every ``step``: ``hand`` (card codes like ``"KD"``),
    ``cards`` (symbols), ``suits``, ``values`` (under the rule in force),
    ``target``, ``num_solutions`` (distinct solutions of the hand),
    ``attempt`` (answers judged so far) and ``success``. After ``step`` also
    ``verdict`` (``correct``, ``wrong_value``, ``wrong_numbers``,
    ``wrong_cards``, ``illegal`` or ``budget``), ``feedback`` and, in image
    mode, ``recognition_correct`` (whether ``cards`` named the dealt cards;
    ``None`` when the answer could not be read or was not judged).

    ## Arguments

    Every field of ``gym_generalpoints.config.GeneralPointsConfig`` is a
    keyword argument of ``gym.make`` (or pass ``config=``): ``mode``,
    ``target``, ``face_card_values``, ``hand_size``, ``require_face_card``,
    ``suit_colors`` (``all``/``black``/``red``), ``card_style``
    (``classic``/``minimal``), ``table_color``, ``image_size``,
    ``position_jitter``, ``verify_iter``, ``check_cards``,
    ``check_numbers``, ``check_stated_result``, ``rewards``,
    ``max_echo_chars``, ``compact`` (the one-line text format of
    ``gym_generalpoints.compact``: task ``J10 Q10 K10 T24|K 7 7 A``, answer
    ``10 7 7 1:(10-7)*(1+7)``, short feedback, revision observations that
    hold the whole episode; registered as ``GeneralPoints-L-compact-v0``);
    plus ``render_mode`` (``rgb_array`` or ``ansi``).
    ``reset(options={"cards": ["AS", "7H", "KD", "2C"]})`` deals a given hand
    (a ``ValueError`` says what is wrong with an invalid, repeated, wrong-size
    or unsolvable hand). Rule and look changes made through the wrappers in
    ``gym_generalpoints.wrappers`` take effect at the next reset.

    ```python
    import gymnasium as gym
    import gym_generalpoints  # registers the ids (or use "gym_generalpoints:GeneralPoints-L-v0")

    env = gym.make("GeneralPoints-L-v0", face_card_values=[11, 12, 13], require_face_card=True)
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_answer())
    ```

    ## Version History

    * v0: Initial version: text and image modes, exact solver and verifier,
      sequential revision, rule and visual variants.
    * v0, revised (same id; not yet released): judging follows the paper's
      code where the paper is silent. Image mode judges the cards first;
      text mode no longer judges the ``number`` list (``check_numbers=True``
      restores it); a trailing ``= N`` is ignored (``check_stated_result=True``
      judges it). The conversation's feedback turns say which attempt was not
      accepted and why, and the trainers show the whole conversation by
      default (``prompt_format="chat"``). The compact text format
      (``compact=True``, ``GeneralPoints-L-compact-v0``).
    """

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 1}

    def __init__(
        self,
        render_mode: str | None = None,
        *,
        config: GeneralPointsConfig | None = None,
        **options: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        if config is not None and not isinstance(config, GeneralPointsConfig):
            raise TypeError(f"config must be a GeneralPointsConfig, got {type(config).__name__}")
        base = config if config is not None else GeneralPointsConfig()
        self._config = base.replace(**options) if options else base
        self._pending = self._config
        self.render_mode = render_mode
        width, height = self._config.image_size
        self.action_space = FreeText()
        observation: dict[str, spaces.Space] = {"text": prompt_space(MAX_PROMPT_CHARS)}
        if self._config.image:
            observation["image"] = spaces.Box(0, 255, (height, width, 3), np.uint8)
        self.observation_space = spaces.Dict(observation)
        self._hand: Hand | None = None
        self._codes: tuple[str, ...] = ()
        self._suits: tuple[str, ...] = ()
        self._solutions: tuple[str, ...] = ()
        self._offsets: tuple[tuple[int, int], ...] | None = None
        self._image: np.ndarray | None = None
        self._rendered: np.ndarray | None = None
        self._task = ""
        self._prompt = ""
        self._turns: list[_Turn] = []
        self._done = False

    # ------------------------------------------------------------------ config

    @property
    def config(self) -> GeneralPointsConfig:
        """The configuration of the current episode (frozen)."""
        return self._config

    def reconfigure(self, **changes: Any) -> GeneralPointsConfig:
        """Change rules or looks from the next ``reset`` on; returns the pending config.

        Changes accumulate, so wrappers compose. ``mode`` and ``image_size``
        fix the observation space and can only be set when making the env.

        Raises:
            TypeError: An unknown option.
            ValueError: An invalid value, or a change of ``mode``/``image_size``.
        """
        fixed = {"mode": self._config.mode, "image_size": self._config.image_size}
        pending = self._pending.replace(**changes)
        for name, value in fixed.items():
            if getattr(pending, name) != value:
                raise ValueError(f"{name} fixes the observation space; pass it to gym.make instead")
        self._pending = pending
        return pending

    # ---------------------------------------------------------------- gym API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        # Until a hand is dealt no episode is open: a reset that raises (say, on an
        # invalid fixed hand) must not leave the previous episode steppable.
        self._hand = None
        cfg = self._config = self._pending
        options = options or {}
        if not isinstance(options, Mapping):
            raise ValueError(
                f"reset options must be a dict like {{'cards': ['AS', '7H', 'KD', '2C']}}, "
                f"got {type(options).__name__}"
            )
        unknown = set(options) - {"cards"}
        if unknown:
            raise ValueError(
                f"unknown reset option(s) {sorted(unknown)}; the only option is 'cards'"
            )
        if "cards" in options:
            cards = self._given_hand(options["cards"], cfg)
        else:
            cards = deal(cfg.deal_rules(), self.np_random)
        hand = self._hand = Hand.from_cards(
            cards, target=cfg.target, face_card_values=cfg.face_card_values
        )
        self._codes = tuple(card.code for card in cards)
        self._suits = tuple(card.suit for card in cards)
        self._solutions = solve(hand.values, cfg.target)
        self._offsets = None
        if cfg.position_jitter > 0:
            mx, my = table_layout(cfg.hand_size, *cfg.image_size).max_shift
            shifts = self.np_random.uniform(-1.0, 1.0, size=(len(cards), 2)) * cfg.position_jitter
            self._offsets = tuple((round(dx * mx), round(dy * my)) for dx, dy in shifts)
        self._image = self._draw_table() if cfg.image else None
        self._rendered = None
        if cfg.compact:
            self._task = self._prompt = compact.task_text(hand)
        else:
            self._task = self._prompt = task_prompt(
                hand.ranks, image=cfg.image, target=cfg.target, face_card_values=cfg.face_card_values
            )
        self._turns = []
        self._done = False
        return self._observation(), self._info(success=False)

    def step(self, action: str) -> tuple[dict[str, Any], SupportsFloat, bool, bool, dict[str, Any]]:
        if self._hand is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("this episode is over; call reset() to start a new one")
        cfg = self._config
        answer = action if isinstance(action, str) else str(action)
        attempt = len(self._turns) + 1
        cards_correct: bool | None = None
        if attempt > cfg.verify_iter:
            reward, verdict, terminated, truncated = cfg.rewards.budget, "budget", False, True
            feedback = f"The budget of {cfg.verify_iter} verified attempts is used up; this answer was not judged."
            if cfg.compact:
                feedback = compact.FEEDBACK_MARK + "B"
        elif cfg.compact:
            judged = compact.judge(
                self._hand,
                action,
                rewards=cfg.rewards,
                check_numbers=cfg.numbers_checked,
                check_stated_result=cfg.check_stated_result,
                solutions=self._solutions,
            )
            reward, verdict = judged.reward, judged.verdict
            feedback = compact.feedback(self._hand, judged)
            terminated, truncated = verdict == "correct", False
        else:
            judgement = verify(
                self._hand,
                action,
                rewards=cfg.rewards,
                check_cards=cfg.cards_checked,
                check_numbers=cfg.numbers_checked,
                check_stated_result=cfg.check_stated_result,
                solutions=self._solutions,
            )
            reward, verdict, feedback = judgement.reward, judgement.verdict, judgement.feedback
            cards_correct = judgement.cards_correct
            terminated, truncated = verdict == "correct", False
        self._turns.append(
            _Turn(self._prompt, answer, float(reward), verdict, feedback, attempt, cards_correct)
        )
        self._done = terminated or truncated
        if cfg.compact:
            self._prompt = compact.revision_text(
                self._task, [(turn.answer, turn.feedback) for turn in self._turns]
            )
        else:
            self._prompt = revision_prompt(
                self._task,
                to_prompt_text(answer, max_chars=cfg.max_echo_chars),
                feedback,
                attempt,
                cfg.verify_iter,
                finished=self._done,
            )
        if len(self._prompt) > MAX_PROMPT_CHARS:
            self._prompt = to_prompt_text(self._prompt, max_chars=MAX_PROMPT_CHARS)
        info = self._info(success=terminated)
        info["verdict"] = verdict
        info["feedback"] = feedback
        if cfg.image:
            info["recognition_correct"] = cards_correct
        return self._observation(), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | str | None:
        if self.render_mode == "rgb_array":
            return self._table_image().copy()
        if self.render_mode == "ansi":
            return self._ansi()
        return None

    # ------------------------------------------------------- gengym protocol

    def oracle_answer(self) -> str:
        """A JSON answer (keys cards, number, formula) that the verifier scores +5 now.

        Raises:
            RuntimeError: Before ``reset`` or after the episode ended.
        """
        if self._hand is None or self._done:
            raise RuntimeError("no task is open: call reset() first")
        hand = self._hand
        if self._config.compact:
            return compact.oracle_answer(hand, self._solutions[0])
        formula = f"{self._solutions[0]} = {hand.target}"
        return json.dumps(
            {"cards": list(hand.ranks), "number": list(hand.values), "formula": formula}
        )

    def sample_wrong_answer(self, rng: np.random.Generator, verdict: str | None = None) -> str:
        """A well-formed answer the verifier rejects now with ``verdict``.

        ``verdict`` is ``wrong_value``, ``wrong_numbers``, ``illegal`` or, where
        cards are judged (image mode), ``wrong_cards``; ``None`` picks one of
        those at random. Every answer is verified before it is returned.
        Randomness comes from ``rng`` only, never from the env's ``np_random``.

        Raises:
            ValueError: The verdict cannot occur here.
            RuntimeError: Before ``reset`` or after the episode ended.
        """
        if self._hand is None or self._done:
            raise RuntimeError("no task is open: call reset() first")
        cfg = self._config
        if cfg.compact:
            return compact.wrong_compact_answer(
                self._hand,
                np.random.default_rng(rng),
                verdict,
                check_numbers=cfg.numbers_checked,
                check_stated_result=cfg.check_stated_result,
            )
        return wrong_answer(
            self._hand,
            np.random.default_rng(rng),
            verdict,
            check_cards=cfg.cards_checked,
            check_numbers=cfg.numbers_checked,
            check_stated_result=cfg.check_stated_result,
        )

    def sample_random_answer(self, rng: np.random.Generator) -> str:
        """A well-formed answer drawn at random with ``rng`` (the random baseline):
        random cards, the numbers they count under the rule, a random formula."""
        cfg = self._config
        if cfg.compact:
            return compact.random_compact_answer(
                cfg.hand_size, cfg.face_card_values, np.random.default_rng(rng)
            )
        return random_answer(cfg.hand_size, cfg.face_card_values, np.random.default_rng(rng))

    def solutions(self) -> tuple[str, ...]:
        """Every distinct solution of the current hand, simplest first."""
        self._require_hand()
        return self._solutions

    def chat_messages(self) -> list[Message]:
        """The conversation so far: task, then answer/feedback turns (a fresh copy).

        The first user turn holds one image placeholder in image mode. While the
        episode runs the list ends with a user turn (the model answers next);
        once it ended, with the model's last answer.
        """
        self._require_hand()
        cfg = self._config
        messages = [user_message(self._task, num_images=1 if cfg.image else 0)]
        for k, turn in enumerate(self._turns):
            messages.append(assistant_message(turn.answer))
            if not (self._done and k == len(self._turns) - 1):
                text = (
                    turn.feedback
                    if cfg.compact
                    else feedback_message(turn.feedback, turn.attempt, cfg.verify_iter)
                )
                messages.append(user_message(text))
        return messages

    def chat_images(self) -> list[np.ndarray]:
        """``[table image]`` in image mode, ``[]`` in text mode."""
        self._require_hand()
        return [self._image.copy()] if self._image is not None else []

    def transcript(self) -> list[dict[str, Any]]:
        """Every answer of the episode with its prompt, verdict, reward and feedback."""
        return [
            {
                "prompt": turn.prompt,
                "answer": turn.answer,
                "reward": turn.reward,
                "verdict": turn.verdict,
                "feedback": turn.feedback,
                "attempt": turn.attempt,
                "hand": list(self._codes),
                "recognition_correct": turn.cards_correct,
            }
            for turn in self._turns
        ]

    # ---------------------------------------------------------------- helpers

    def _require_hand(self) -> None:
        if self._hand is None:
            raise RuntimeError("call reset() first")

    @staticmethod
    def _given_hand(cards: Any, cfg: GeneralPointsConfig) -> tuple:
        hand = parse_hand(cards)
        if len(hand) != cfg.hand_size:
            raise ValueError(
                f"expected {cfg.hand_size} cards, got {len(hand)}: {[c.code for c in hand]}"
            )
        values = Hand.from_cards(
            hand, target=cfg.target, face_card_values=cfg.face_card_values
        ).values
        if not solve(values, cfg.target):
            raise ValueError(
                f"the hand {' '.join(c.code for c in hand)} (numbers {list(values)} when "
                f"{describe_rule(cfg.face_card_values)}) cannot make {cfg.target}"
            )
        return hand

    def _draw_table(self) -> np.ndarray:
        cfg = self._config
        width, height = cfg.image_size
        return render_table(
            self._codes,
            width=width,
            height=height,
            style=cfg.card_style,
            table_color=cfg.table_color,
            offsets=self._offsets,
        )

    def _table_image(self) -> np.ndarray:
        """The episode's table; in text mode drawn on first request, for humans only."""
        if self._image is not None:
            return self._image
        if self._hand is None:
            width, height = self._config.image_size
            return table_background(width, height, parse_color(self._config.table_color))
        if self._rendered is None:
            self._rendered = self._draw_table()
        return self._rendered

    def _observation(self) -> dict[str, Any]:
        if self._config.image:
            return {"text": self._prompt, "image": self._image.copy()}
        return {"text": self._prompt}

    def _info(self, *, success: bool) -> dict[str, Any]:
        hand = self._hand
        return {
            "hand": self._codes,
            "cards": hand.ranks,
            "suits": self._suits,
            "values": hand.values,
            "target": hand.target,
            "num_solutions": len(self._solutions),
            "attempt": len(self._turns),
            "success": success,
        }

    def _ansi(self) -> str:
        if self._hand is None:
            return "GeneralPoints: no hand dealt yet (call reset)"
        cfg, hand = self._config, self._hand
        lines = [
            f"GeneralPoints: make {hand.target}; {describe_rule(cfg.face_card_values)}",
            f"Cards: {' '.join(self._codes)}  (numbers {', '.join(map(str, hand.values))}; "
            f"{len(self._solutions)} distinct solutions)",
            f"Attempts: {len(self._turns)} of {cfg.verify_iter}",
        ]
        if self._turns:
            last = self._turns[-1]
            lines.append(f"Last verdict: {last.verdict} ({last.reward:+g}): {last.feedback}")
        if self._done:
            lines.append("Episode over.")
        return "\n".join(lines)
