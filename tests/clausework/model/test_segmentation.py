"""Segmentation: units are verbatim, ordered, and cut where contracts cut (not at wrapped lines)."""

from __future__ import annotations

import itertools

from clausework.model.segmentation import headings, segment

TEXT = (
    "EXHIBIT 10.1\n"
    "DISTRIBUTION AGREEMENT\n"
    "This Agreement is made by ACME Corp., a Delaware corporation, and Beta Inc. on\n"
    "June\xa01, 2004.\n"
    "1.6\n"
    "Governing Law\n"
    "This Agreement shall be governed by the laws of the State of New York. Each party\n"
    "submits to the jurisdiction of the courts of New York, i.e. the state courts.\n"
    "2. ASSIGNMENT.  Neither party may assign this Agreement without the prior written consent of\n"
    "the other party; any attempted assignment is void.\n"
    "(a) first item of a list\n"
    "(b) second item\n"
)


def pieces(text: str) -> list[str]:
    return [text[u.start : u.end] for u in segment(text)]


def test_units_are_verbatim_ordered_and_trimmed() -> None:
    units = segment(TEXT)
    assert units == sorted(units)
    for unit in units:
        piece = TEXT[unit.start : unit.end]
        assert piece == piece.strip() and piece
    for left, right in itertools.pairwise(units):
        assert left.end <= right.start


def test_sentences_span_wrapped_lines_and_skip_abbreviations() -> None:
    got = pieces(TEXT)
    assert "This Agreement is made by ACME Corp., a Delaware corporation, and Beta Inc. on\nJune\xa01, 2004." in got
    assert "Each party\nsubmits to the jurisdiction of the courts of New York, i.e. the state courts." in got, (
        "i.e. must not end a sentence, a line break must not either"
    )


def test_headings_enumerations_and_semicolons_are_boundaries() -> None:
    got = pieces(TEXT)
    assert "Governing Law" in got
    assert "2. ASSIGNMENT." in got
    assert "Neither party may assign this Agreement without the prior written consent of\nthe other party;" in got
    assert "any attempted assignment is void." in got
    assert "(a) first item of a list" in got and "(b) second item" in got


def test_units_know_their_section_heading() -> None:
    units = segment(TEXT)
    by_text = dict(zip(pieces(TEXT), headings(TEXT, units), strict=True))
    assert by_text["This Agreement shall be governed by the laws of the State of New York."] == "Governing Law"


def test_wrapped_title_case_line_is_not_a_heading() -> None:
    text = "Each party shall use efforts to develop the\nCo-Branded Pages and the Information\nTransfer Mechanism."
    assert pieces(text) == [text]


def test_empty_and_punctuation_only_text() -> None:
    assert segment("") == []
    assert segment(" \n\xa0-- \n") == []
