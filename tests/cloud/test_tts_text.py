"""Text -> phonemes for the piper voice: what eSpeak is given, and where clauses end."""

# IPA phonemes are the subject here: their look-alike letters are meant.
# ruff: noqa: RUF001

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.engines import espeak
from cloud.engines.tts import (
    MAX_TEXT_CHARS,
    PhonemeInventory,
    SpeechTextError,
    check_speed,
    phoneme_chunks,
    split_long,
)
from shared.errors import ConfigError

# The joe voice's symbols are a superset of these; enough for the pure tests.
INVENTORY = PhonemeInventory(frozenset("_^$ !',-.:;?abdefhijklmnoprstuvwzæðŋɐɑɔəɚɛɜɡɪɹɾʃʊʌʒθˈˌː"
                                       "ᵻ"))


@pytest.mark.parametrize(("text", "spoken"), [
    ("It costs $5.50.", "It costs 5 dollars 50 cents."),
    ("$1 and $1.01", "1 dollar and 1 dollar 1 cent"),
    ("a $2.5 million deal", "a 2.5 million dollars deal"),
    ("€20 or £3.00", "20 euros or 3 pounds"),
    ("**Bold** and `code`", "Bold and code"),
    ("# Title\n- milk\n- eggs", "Title. milk. eggs"),
    ("nul\x00byte\x07", "nul byte"),
    ("thumbs 👍🏽 up 😀", "thumbs up"),
    ("zero\u200bwidth\u200djoin", "zerowidthjoin"),
    ("see https://www.example.com/a", "see example.com/a"),
    ("our #1 fan", "our number 1 fan"),
    ("20°C", "20°C"),
])
def test_speakable_spells_out_or_removes_what_espeak_reads_badly(text: str, spoken: str) -> None:
    assert espeak.speakable(text) == spoken


@pytest.mark.parametrize(("text", "expected"), [
    ("Yes, I can. Can you?", [("Yes", ","), ("I can", "."), ("Can you", "?")]),
    ("It is $5.50 or 3,000 at 10:30.", [("It is $5.50 or 3,000 at 10:30", ".")]),
    ("Dr. Smith and Mr. Jones met.", [("Dr. Smith and Mr. Jones met", ".")]),
    ("The U.S. is big, e.g. Texas.", [("The U.S. is big", ","), ("e.g. Texas", ".")]),
    ("Visit example.com today!?", [("Visit example.com today", "?")]),
    ("Wait \u2014 what... ok", [("Wait", ","), ("what", "."), ("ok", "")]),
    ('He said "fine." Then left', [('He said "fine', "."), ("Then left", "")]),
    ("I live in the U.S.", [("I live in the U.S.", ".")]),
])
def test_clauses_end_only_at_punctuation_that_ends_a_word(
    text: str, expected: list[tuple[str, str]]
) -> None:
    assert espeak.clauses(text) == expected


def test_phonemize_gives_one_string_per_sentence_with_its_punctuation() -> None:
    sentences = espeak.phonemize("Sure, the museum opens at nine. Do you need tickets?")
    assert len(sentences) == 2
    assert "," in sentences[0] and sentences[0].endswith(".")
    assert sentences[1].endswith("?")
    assert all("\u200d" not in s for s in sentences)


@pytest.mark.parametrize(("text", "word"), [
    ("It costs $5.50.", "dˈɑːlɚz"),  # "dollars", not "dollar five point five zero"
    ("It is 20% off.", "pɚsˈɛnt"),
    ("Ask Dr. Smith.", "dˈɑːktɚ"),
    ("3,000 people", "θˈaʊzənd"),
])
def test_numbers_and_abbreviations_are_read_as_words(text: str, word: str) -> None:
    assert word in " ".join(espeak.phonemize(text))


def test_unknown_phoneme_characters_are_dropped_and_counted() -> None:
    kept, dropped = INVENTORY.keep_known("hˈɛloʊ☃ʘ")
    assert kept == "hˈɛloʊ"
    assert dropped == 2


def test_tokens_file_reading_keeps_the_space_symbol(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("_ 0\n^ 1\n$ 2\n  3\nˈ 120\n", encoding="utf-8")
    assert PhonemeInventory.from_tokens_file(tokens).symbols == frozenset("_^$ ˈ")


def test_long_sentences_are_cut_at_a_comma_or_space_under_the_limit() -> None:
    ipa = "ɐ" * 40 + ", " + "b " * 100
    parts = split_long(ipa, limit=60)
    assert parts[0] == "ɐ" * 40 + ","
    assert all(0 < len(p) <= 60 for p in parts)
    assert "".join(parts).replace(" ", "") == ipa.replace(" ", "")
    assert split_long("ɐ" * 130, limit=60) == ["ɐ" * 60, "ɐ" * 60, "ɐ" * 10]


def test_text_over_the_limit_is_refused_with_one_line() -> None:
    with pytest.raises(SpeechTextError) as err:
        phoneme_chunks("word " * (MAX_TEXT_CHARS // 5 + 1), "en-us", INVENTORY)
    assert "\n" not in str(err.value) and str(MAX_TEXT_CHARS) in str(err.value)


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "...", "?!", "😀😀", "\x00\x01"])
def test_text_with_nothing_speakable_gives_no_chunks(text: str) -> None:
    assert phoneme_chunks(text, "en-us", INVENTORY) == []


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan"), float("inf")])
def test_nonsense_speeds_are_config_errors(speed: float) -> None:
    with pytest.raises(ConfigError):
        check_speed(speed)


def test_speeds_are_kept_within_what_the_voice_does_well() -> None:
    assert check_speed(0.1) == 0.5
    assert check_speed(1.2) == 1.2
    assert check_speed(9.0) == 2.0


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_any_text_gives_chunks_of_known_phonemes_only(text: str) -> None:
    for chunk in phoneme_chunks(text, "en-us", INVENTORY):
        assert chunk and set(chunk) <= INVENTORY.symbols
