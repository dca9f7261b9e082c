"""Text normalization and word error rate."""

from __future__ import annotations

import pytest

from shared.text import (
    corpus_word_error_rate,
    edit_distance,
    normalize_text,
    number_to_words,
    word_error_rate,
)


@pytest.mark.parametrize(("text", "normal"), [
    ("Set a timer for 15 minutes.", "set a timer for fifteen minutes"),
    ("Please book a taxi for 8 o'clock!", "please book a taxi for eight oclock"),
    ("It's 7:30 on the 2nd floor", "its seven thirty on the second floor"),
    ("The city centre, my neighbour's dog", "the city center my neighbors dog"),
    ("Forty-two", "forty two"),
    ("$5 and 20%", "five dollars and twenty percent"),
    ("1,234", "one thousand two hundred thirty four"),
    ("  ...  ", ""),
])
def test_normalize_text(text: str, normal: str) -> None:
    assert normalize_text(text) == normal


def test_digits_and_words_compare_equal() -> None:
    assert word_error_rate("Set a timer for fifteen minutes.", "set a timer for 15 minutes") == 0


def test_number_to_words() -> None:
    assert number_to_words(0) == "zero"
    assert number_to_words(105) == "one hundred five"
    assert number_to_words(2_000_021) == "two million twenty one"


def test_edit_distance_counts_each_kind_of_error() -> None:
    assert edit_distance(["a", "b", "c"], ["a", "x", "c"]) == 1
    assert edit_distance(["a", "b", "c"], ["a", "c"]) == 1
    assert edit_distance(["a", "b", "c"], ["a", "b", "c", "d"]) == 1
    assert edit_distance([], ["a", "b"]) == 2


def test_word_error_rate_edges() -> None:
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("", "hello") == 1.0
    assert word_error_rate("hello world", "") == 1.0
    assert word_error_rate("one two three four", "one two tree four") == 0.25


def test_corpus_rate_weights_by_reference_length() -> None:
    pairs = [("a b c d", "a b c d"), ("e f", "e x")]
    assert corpus_word_error_rate(pairs) == pytest.approx(1 / 6)
    assert corpus_word_error_rate([]) == 0.0
