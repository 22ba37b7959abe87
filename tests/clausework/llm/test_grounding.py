"""Quotes are located at their true offsets despite the LLM's re-spacing, re-casing and de-hyphenation;
anything that is not in the text is rejected."""

from __future__ import annotations

import random

import pytest

from clausework.llm.grounding import Grounder, clean_quote

NBSP = "\xa0"
# Shaped like the parser's output: non-breaking spaces between words, layout line breaks, a hyphenated
# line break, typographic quotes, a ligature.
TEXT = (
    f"7.{NBSP}GOVERNING{NBSP}LAW.{NBSP}This{NBSP}Agreement{NBSP}shall{NBSP}be{NBSP}governed{NBSP}by{NBSP}the\n"
    f"laws{NBSP}of{NBSP}the{NBSP}State{NBSP}of{NBSP}New{NBSP}York,{NBSP}without{NBSP}regard{NBSP}to{NBSP}its{NBSP}con-\n"
    f"flicts{NBSP}of{NBSP}law{NBSP}principles.\n"
    f"8.{NBSP}TERM.{NBSP}The{NBSP}\u201cInitial{NBSP}Term\u201d{NBSP}is{NBSP}two{NBSP}(2){NBSP}years.{NBSP}Either{NBSP}party\n"
    f"may{NBSP}terminate{NBSP}this{NBSP}Agreement{NBSP}for{NBSP}convenience{NBSP}on{NBSP}90{NBSP}days\u2019{NBSP}notice.\n"
    f"9.{NBSP}NOTICES.{NBSP}Notices{NBSP}shall{NBSP}be{NBSP}in{NBSP}writing{NBSP}and{NBSP}de\ufb01ned{NBSP}herein.\n"
    f"10.{NBSP}TERM.{NBSP}This{NBSP}Agreement{NBSP}may{NBSP}be{NBSP}renewed.\n"
)


@pytest.fixture
def grounder() -> Grounder:
    return Grounder(TEXT)


def squash(text: str) -> str:
    return " ".join(text.replace(NBSP, " ").split()).lower()


def test_exact_match_despite_non_breaking_spaces(grounder: Grounder) -> None:
    quote = "This Agreement shall be governed by the"
    found = grounder.locate(quote)
    assert found is not None and found.level == 1
    assert TEXT[found.start : found.end].replace(NBSP, " ") == quote


def test_whitespace_case_and_hyphenation_tolerant(grounder: Grounder) -> None:
    quote = "this agreement shall be governed by the laws of the state of new york, without regard to its conflicts"
    found = grounder.locate(quote)
    assert found is not None and found.level == 2
    span = TEXT[found.start : found.end]
    assert span.startswith("This") and span.endswith("flicts")
    assert "con-\nflicts" in span


def test_typographic_quotes_and_ligatures(grounder: Grounder) -> None:
    found = grounder.locate('The "Initial Term" is two (2) years.')
    assert found is not None
    assert (
        TEXT[found.start : found.end] == f"The{NBSP}\u201cInitial{NBSP}Term\u201d{NBSP}is{NBSP}two{NBSP}(2){NBSP}years."
    )
    found = grounder.locate("in writing and defined herein")
    assert found is not None
    assert TEXT[found.start : found.end].endswith("de\ufb01ned\xa0herein")


def test_letters_and_digits_level_for_punctuation_drift(grounder: Grounder) -> None:
    # The model dropped the apostrophe and changed punctuation: only letters and digits agree.
    found = grounder.locate("terminate this Agreement for convenience on 90 days notice")
    assert found is not None and found.level == 3
    assert TEXT[found.start : found.end].endswith("notice")


def test_short_quotes_need_more_than_letters(grounder: Grounder) -> None:
    assert grounder.locate("ne wyo rk") is None  # too short for the letters-only level


def test_text_not_in_the_document_is_rejected(grounder: Grounder) -> None:
    assert grounder.locate("This Agreement shall be governed by the laws of Delaware") is None
    assert grounder.locate("") is None
    assert grounder.locate('  ""  ') is None


def test_wrapping_quotes_are_removed() -> None:
    assert clean_quote(' "Initial Term" ') == "Initial Term"
    assert clean_quote("\u201cabc\u201d") == "abc"


def test_hint_range_picks_the_right_occurrence(grounder: Grounder) -> None:
    second = TEXT.index("10.")
    first = grounder.locate("TERM.")
    hinted = grounder.locate("TERM.", within=[(second, len(TEXT))])
    assert first is not None and hinted is not None
    assert first.start < second <= hinted.start


def test_ellipsis_spans_from_first_to_last_piece(grounder: Grounder) -> None:
    found = grounder.locate("This Agreement shall be governed by the ... conflicts of law principles.")
    assert found is not None
    span = TEXT[found.start : found.end]
    assert span.startswith("This") and span.endswith("principles.")


def test_ellipsis_pieces_out_of_order_are_rejected(grounder: Grounder) -> None:
    assert grounder.locate("conflicts of law principles ... This Agreement shall be governed") is None


def test_random_mangled_substrings_map_back_to_their_offsets() -> None:
    rng = random.Random(7)
    words = [
        "the",
        "licensee",
        "shall",
        "pay",
        "royalties",
        "of",
        "five",
        "percent",
        "net",
        "sales",
        "each",
        "calendar",
        "quarter",
    ]
    text = "\n".join(NBSP.join(rng.choice(words) for _ in range(12)) + "." for _ in range(60))
    grounder = Grounder(text)
    for _ in range(200):
        start = rng.randrange(0, len(text) - 80)
        while start and not text[start - 1].isspace():
            start -= 1
        end = start + rng.randrange(40, 80)
        while end < len(text) and text[end - 1].isalnum() and text[end].isalnum():
            end += 1
        original = text[start:end].strip()
        start += len(text[start:end]) - len(text[start:end].lstrip())
        mangled = " ".join(original.split()).upper() if rng.random() < 0.5 else original.replace(NBSP, "  ")
        found = grounder.locate(mangled)
        assert found is not None
        # The first occurrence of the normalised quote: the text there reads the same.
        assert squash(text[found.start : found.end]) == squash(original)
        assert found.start <= start  # `start` is an occurrence, so the first one is not later
