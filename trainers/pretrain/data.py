"""Pretraining data: oracle play of compact GeneralPoints-L over a family of rules.

Each example is one prompt the env shows (the observation of
``GeneralPoints-L-compact-v0``) and a verified answer. What varies, drawn
from a generator seeded by ``(seed, index)`` so that every example is a pure
function of its settings and position:

* **the rule**: what J, Q and K count, each drawn from
  ``face_value_min..face_value_max`` independently (2,197 mappings by
  default), minus ``excluded_rules`` -- by default the paper's rule-OOD
  mapping 11/12/13, at every target, so that the OOD evaluation measures
  reading a rule never trained on. A small ``id_rule_share`` adds the
  training rule (J/Q/K = 10 at 24): the stand-in for the paper's base model
  having seen the usual game;
* **the target**: ``targets[0]`` (24) for ``first_target_share`` of the
  examples, the other targets evenly for the rest;
* **the hand**: four distinct cards from one deck, uniformly among those the
  rule and target make solvable;
* **the answer**: the cards' numbers, largest first (as the env's oracle
  writes them), and one of *all* distinct solutions of the hand, uniformly
  (a variety of formulas, not one per number set);
* **revision turns**: ``revision_share`` of the examples first step 1 to
  ``max_revisions`` wrong answers through the env and answer the
  observation that follows, which holds each wrong answer with the
  verifier's compact feedback. Wrong answers are of the kinds a small model
  makes: a formula over the right numbers with the wrong value, a misread
  rule (a face card counted as some other value, with a formula that would
  be right for those numbers), numbers used twice or left out, and illegal
  formulas.

Every answer is stepped through the env and must be judged ``correct``
(every wrong one must not be); nothing is kept on the oracle's word alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from gym_generalpoints import compact
from gym_generalpoints.cards import DECK, FACE_RANKS, parse_hand, rank_values
from gym_generalpoints.solver import is_solvable, solve
from gym_generalpoints.verifier import Hand
from trainers.pretrain.pretrain_config import PretrainConfig

ENV_ID = "GeneralPoints-L-compact-v0"
#: The paper's training rule.
ID_RULE = (10, 10, 10)
#: Wrong-answer kinds of revision turns and their shares.
WRONG_KINDS: dict[str, float] = {"wrong_value": 0.45, "misread_rule": 0.25, "wrong_numbers": 0.15, "illegal": 0.15}


@dataclass(frozen=True)
class Example:
    """One pretraining example.

    Attributes:
        prompt: The env's observation text.
        answer: The verified answer.
        rule: What J, Q and K count.
        target: The target.
        revisions: Wrong answers before this one.
    """

    prompt: str
    answer: str
    rule: tuple[int, int, int]
    target: int
    revisions: int


class ExampleMaker:
    """Makes example ``index`` of a config; keeps one env for all of them."""

    def __init__(self, config: PretrainConfig) -> None:
        from gengym_core.registry import make

        self.config = config
        self.env = make(ENV_ID, verify_iter=config.max_revisions + 1)
        self.excluded = config.rules_excluded()
        self._kinds = list(WRONG_KINDS)
        self._kind_p = np.array(list(WRONG_KINDS.values())) / sum(WRONG_KINDS.values())

    def rule_and_target(self, rng: np.random.Generator) -> tuple[tuple[int, int, int], int]:
        cfg = self.config
        if rng.random() < cfg.id_rule_share and ID_RULE not in self.excluded:
            return ID_RULE, cfg.targets[0]
        if len(cfg.targets) == 1 or rng.random() < cfg.first_target_share:
            target = cfg.targets[0]
        else:
            target = cfg.targets[1 + int(rng.integers(len(cfg.targets) - 1))]
        while True:
            rule = tuple(int(v) for v in rng.integers(cfg.face_value_min, cfg.face_value_max + 1, size=3))
            if rule not in self.excluded:
                return rule, target  # type: ignore[return-value]

    def example(self, index: int) -> Example:
        """Example ``index`` (a pure function of the config's seed and ``index``)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, index]))
        for _ in range(1000):
            rule, target = self.rule_and_target(rng)
            values = rank_values(rule)
            for _ in range(200):
                cards = [DECK[int(i)] for i in rng.choice(len(DECK), size=4, replace=False)]
                if is_solvable([values[card.index % 13] for card in cards], target):
                    return self._play(rng, rule, target, cards)
        raise RuntimeError(f"no solvable hand found for example {index}")

    def _play(self, rng: np.random.Generator, rule, target: int, cards) -> Example:
        env, core = self.env, self.env.unwrapped
        core.reconfigure(face_card_values=rule, target=target)
        obs, _ = env.reset(options={"cards": [card.code for card in cards]})
        hand = Hand.from_cards(cards, target=target, face_card_values=rule)
        revisions = 0
        if rng.random() < self.config.revision_share:
            revisions = 1 + int(rng.integers(self.config.max_revisions))
            for _ in range(revisions):
                wrong = self._wrong(rng, hand)
                obs, _, terminated, truncated, info = env.step(wrong)
                if info["verdict"] == "correct" or terminated or truncated:
                    raise RuntimeError(f"a wrong answer {wrong!r} was accepted or ended the episode")
        solutions = core.solutions()
        answer = compact.oracle_answer(hand, solutions[int(rng.integers(len(solutions)))])
        prompt = obs["text"]
        _, _, _, _, info = env.step(answer)
        if info["verdict"] != "correct":
            raise RuntimeError(f"the verifier rejects the oracle's answer {answer!r}: {info['feedback']}")
        return Example(prompt, answer, rule, target, revisions)

    def _wrong(self, rng: np.random.Generator, hand: Hand) -> str:
        kind = self._kinds[int(rng.choice(len(self._kinds), p=self._kind_p))]
        if kind == "misread_rule":
            wrong = _misread_rule(rng, hand)
            if wrong is not None:
                return wrong
            kind = "wrong_numbers"
        return self.env.unwrapped.sample_wrong_answer(rng, verdict=kind)

    def close(self) -> None:
        self.env.close()


def _misread_rule(rng: np.random.Generator, hand: Hand) -> str | None:
    """The numbers under a misread face-card rule, with a formula that would suit them."""
    faces = [k for k, rank in enumerate(hand.ranks) if rank in FACE_RANKS]
    if not faces:
        return None
    numbers = list(hand.values)
    for k in faces:
        if k == faces[0] or rng.random() < 0.5:
            options = [v for v in range(1, 14) if v != numbers[k]]
            numbers[k] = options[int(rng.integers(len(options)))]
    if sorted(numbers) == sorted(hand.values):  # two face cards swapped: not a misreading
        return None
    solutions = solve(numbers, hand.target)
    if solutions:
        formula = solutions[int(rng.integers(len(solutions)))]
    else:
        from gym_generalpoints.sampling import random_formula

        formula = random_formula(numbers, rng)
    return compact.answer_text(sorted(numbers, reverse=True), formula)


def iter_examples(config: PretrainConfig, start: int = 0, stop: int | None = None) -> Iterator[Example]:
    """Examples ``start`` to ``stop`` (default ``num_examples``) in order."""
    maker = ExampleMaker(config)
    try:
        for index in range(start, config.num_examples if stop is None else stop):
            yield maker.example(index)
    finally:
        maker.close()


def eval_prompts(rule: tuple[int, int, int], count: int, seed: int) -> list[tuple[Hand, str]]:
    """``count`` fixed hands at target 24 under ``rule`` (with a face card unless it is
    the training rule, as the rule-OOD evaluation deals them), with their task prompts."""
    from gengym_core.registry import make

    env = make(ENV_ID, face_card_values=list(rule), require_face_card=rule != ID_RULE)
    out = []
    try:
        for k in range(count):
            obs, info = env.reset(seed=seed * 100_003 + k)
            hand = Hand.from_cards(parse_hand(info["hand"]), face_card_values=rule)
            out.append((hand, obs["text"]))
    finally:
        env.close()
    return out
