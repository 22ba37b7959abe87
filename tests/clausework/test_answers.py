"""Answer normalisation: the CUAD answer formats for dates, jurisdictions, terms and parties."""

from __future__ import annotations

import pytest

from clausework import answers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("June 21, 1999", "6/21/1999"),
        ("23rd day of\xa0 September, 2016", "9/23/2016"),
        ("the 1st of      March, 2003", "3/1/2003"),
        ("22 Dec. 2017", "12/22/2017"),
        ("Sept. 1, 2004", "9/1/2004"),
        ("December 1st, 2015", "12/1/2015"),
        ("19  DAY OF MAY , 2010", "5/19/2010"),
        ("1/14/02", "1/14/2002"),
        ("2004-06-01", "6/1/2004"),
        ("this ___ day of _________, 2004", "[]/[]/2004"),
        ("____________, 1996", "[]/[]/1996"),
        ("[ ] day of [ ], 2020", "[]/[]/2020"),
        ("April __, 2005", "4/[]/2005"),
        ("no date in here", ""),
    ],
)
def test_normalize_date(text: str, expected: str) -> None:
    assert answers.normalize_date(text) == expected


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("This Agreement shall be governed by the laws of the State of New York, without regard to", "New York"),
        (
            "governed by and construed in accordance with the laws of the\nCommonwealth of Massachusetts.",
            "Massachusetts",
        ),
        (
            "governed by the laws of the Province of British Columbia and the federal laws of Canada",
            "British Columbia, Canada",
        ),
        ("shall be governed by the laws of England and Wales.", "England"),
        ("governed by the laws of the People\u2019s Republic of China.", "People's Republic of China"),
        ("This Agreement is governed by Delaware law.", "Delaware"),
        ("The parties shall meet once a month.", ""),
    ],
)
def test_governing_law(clause: str, expected: str) -> None:
    assert answers.governing_law(clause) == expected


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("Thereafter, this agreement will renew automatically from year to year unless cancelled", "successive 1 year"),
        ("shall automatically renew for successive two (2) year periods unless either party", "successive 2 years"),
        (
            "The initial term is five (5) years and may be extended for an additional three (3) years.",
            "3 years",
        ),
        (
            "shall continue for seven (7) years and will automatically renew for one or more annual periods",
            "successive 1 year",
        ),
        (
            "Thereafter, this Agreement shall continue until either party gives six (6) months prior notice.",
            "perpetual",
        ),
        ("This license is perpetual.", "perpetual"),
    ],
)
def test_renewal_term(clause: str, expected: str) -> None:
    assert answers.renewal_term(clause) == expected


def test_notice_period_prefers_the_duration_next_to_notice() -> None:
    clause = "renews for one (1) year terms unless either party gives notice at least ninety (90) days prior to expiry"
    assert answers.notice_period(clause) == "90 days"


def test_expiration() -> None:
    assert answers.expiration("This Agreement shall expire on December 31, 2006.") == "12/31/2006"
    assert answers.expiration("commencing on June 1, 1998 for a term of three (3) years") == "6/1/2001"
    assert answers.expiration("for five (5) years from the Effective Date", start_date="3/18/2010") == "3/18/2015"
    assert (
        answers.expiration("will terminate on the third anniversary of the Effective Date", "9/21/1998") == "9/21/2001"
    )
    assert answers.expiration("The license shall continue in perpetuity.") == "perpetual"
    assert answers.expiration("The term is five years from the Effective Date.") == ""


def test_party_answer_includes_the_defined_alias() -> None:
    text = 'between ACCURAY INCORPORATED, a Delaware corporation ("Accuray"), and SIEMENS AG'
    start = text.index("ACCURAY")
    end = start + len("ACCURAY INCORPORATED")
    assert answers.party(text, start, end) == 'ACCURAY INCORPORATED ("Accuray")'


def test_answer_for_dispatches_by_category() -> None:
    text = "Dated as of June 8, 2010. Either party may terminate."
    start = text.index("June")
    assert answers.answer_for("Agreement Date", text, start, start + len("June 8, 2010")) == "6/8/2010"
    assert answers.answer_for("Termination for Convenience", text, 26, len(text), "Yes/No") == "Yes"
    assert answers.answer_for("License Grant", text, 26, len(text), "") == ""
