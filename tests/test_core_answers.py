"""Tolerant JSON answer parsing (gengym_core.answers)."""

import time

import pytest

from gengym_core.answers import (
    MAX_SCAN_CHARS,
    AnswerFormatError,
    get_field,
    normalize_key,
    parse_json_answer,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"formula": "2*3*4*1"}', {"formula": "2*3*4*1"}),
        ("```json\n{\"a\": 1}\n```", {"a": 1}),
        ("Here you go: {'a': 'x', 'b': [1, 2,],} hope it helps", {"a": "x", "b": [1, 2]}),
        ('{a: True, b: None, c: false}', {"a": True, "b": None, "c": False}),
        ('{"current observation": "x", "action": "forward()"}', {"current observation": "x", "action": "forward()"}),
        ('{"s": "quote \\" and \\\\ and \\u00e9\\n"}', {"s": 'quote " and \\ and \u00e9\n'}),
        ("{'s': \"it's\"}", {"s": "it's"}),
        ('{"n": -3.5e2, "m": +7, "k": .5}', {"n": -350.0, "m": 7, "k": 0.5}),
        ('{"a" = 1; "b" = 2}', {"a": 1, "b": 2}),
        ('{"nested": {"deeper": [{"x": 1}]}}', {"nested": {"deeper": [{"x": 1}]}}),
        ("{}", {}),
    ],
)
def test_parses_lenient_dialect(text, expected):
    assert parse_json_answer(text) == expected


def test_last_object_with_expected_key_wins():
    text = 'draft {"formula": "1"} final {"formula": "2"} and {"unrelated": 0}'
    assert parse_json_answer(text, ["formula"]) == {"formula": "2"}
    assert parse_json_answer(text) == {"unrelated": 0}


def test_inner_objects_are_not_taken_for_answers():
    text = '{"outer": {"formula": "inner"}}'
    assert parse_json_answer(text, ["formula"]) == {"outer": {"formula": "inner"}}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("no braces at all", "no '{' found"),
        ('{"a": ', "unexpected end"),
        ('{"a": "unclosed}', "unclosed string"),
        ('{"a" 1}', "expected ':'"),
        ('{"a": 1 "b": 2}', "expected ','"),
        ('{"a": [1 2]}', "between items"),
        ('{"a": @}', "unexpected character"),
        ('{"a": "\\uZZZZ"}', "bad \\u escape"),
        ('{"a": ' + "1" * 100 + "}", "number longer"),
        ("[" * 40, "no '{' found"),
    ],
)
def test_errors_explain_what_is_wrong(text, fragment):
    with pytest.raises(AnswerFormatError) as info:
        parse_json_answer(text)
    assert fragment in info.value.message


def test_error_position_points_into_text():
    with pytest.raises(AnswerFormatError) as info:
        parse_json_answer('xx {"a": @}')
    assert info.value.position == 9


def test_non_string_input_is_an_error_not_a_crash():
    with pytest.raises(AnswerFormatError):
        parse_json_answer(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "{" * 60_000,
        '{"a": "' + "x" * 60_000,
        '{"a":' * 10_000,
        '{"a": 1' + ', "b": 2' * 7_000,
        "x" * (1 << 20),
        "\u0663" * 50_000,
    ],
)
def test_adversarial_text_fails_fast(text):
    start = time.perf_counter()
    with pytest.raises(AnswerFormatError):
        parse_json_answer(text)
    assert time.perf_counter() - start < 0.5


def test_many_nested_candidates_stay_fast():
    start = time.perf_counter()
    assert parse_json_answer(("{" * 17 + "}" * 17) * 1000) == {}
    assert time.perf_counter() - start < 0.5


def test_overlong_answer_is_rejected_with_its_length():
    with pytest.raises(AnswerFormatError, match=str(MAX_SCAN_CHARS + 1)):
        parse_json_answer("{" + " " * MAX_SCAN_CHARS)


def test_keys_compare_after_normalisation():
    assert normalize_key(" Current_Observation") == "current observation"
    assert get_field({"Current-Instruction": 3}, "current instruction") == 3
    with pytest.raises(KeyError):
        get_field({"a": 1}, "b")
