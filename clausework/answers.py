"""Normalised answers for typed CUAD categories, in CUAD's `answer` formats.

The model finds the clause; these rules read the answer out of its verbatim text: dates as m/d/yyyy
(blanks as []), the governing-law jurisdiction, the renewal term ("successive 1 year", "perpetual"),
the notice period ("90 days"), party names with their defined aliases. Rules are the right tool here:
the formats are fixed and the facts are spelled out in the clause.
"""

from __future__ import annotations

import re

from clausework.model.spans import DATE, MONTHS

_MONTHS = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "forty-five": 45,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "seventy-five": 75,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "one hundred": 100,
    "one hundred twenty": 120,
    "one hundred and twenty": 120,
    "one hundred eighty": 180,
    "one hundred and eighty": 180,
    "a": 1,
    "an": 1,
}
US_STATES = [
    "Alabama",
    "Alaska",
    "Arizona",
    "Arkansas",
    "California",
    "Colorado",
    "Connecticut",
    "Delaware",
    "Florida",
    "Georgia",
    "Hawaii",
    "Idaho",
    "Illinois",
    "Indiana",
    "Iowa",
    "Kansas",
    "Kentucky",
    "Louisiana",
    "Maine",
    "Maryland",
    "Massachusetts",
    "Michigan",
    "Minnesota",
    "Mississippi",
    "Missouri",
    "Montana",
    "Nebraska",
    "Nevada",
    "Ohio",
    "Oklahoma",
    "Oregon",
    "Pennsylvania",
    "Tennessee",
    "Texas",
    "Utah",
    "Vermont",
    "Virginia",
    "Washington",
    "Wisconsin",
    "Wyoming",
    "New Hampshire",
    "New Jersey",
    "New Mexico",
    "New York",
    "North Carolina",
    "North Dakota",
    "Rhode Island",
    "South Carolina",
    "South Dakota",
    "West Virginia",
    "District of Columbia",
]
CANADIAN_PROVINCES = [
    "Ontario",
    "Quebec",
    "British Columbia",
    "Alberta",
    "Manitoba",
    "Saskatchewan",
    "Nova Scotia",
    "New Brunswick",
]
YES_NO_FORMAT = "Yes/No"
DATE_CATEGORIES = frozenset({"Agreement Date", "Effective Date"})

_SPACE = re.compile(r"\s+")
_NUMBER = r"(?:\d+(?:\.\d+)?|" + "|".join(sorted((re.escape(w) for w in _NUMBER_WORDS), key=len, reverse=True)) + r")"
_DURATION = re.compile(
    r"\b(" + _NUMBER + r")(?:[\s\-]*\((\d+)\))?[\s\-]+(?:calendar\s+|business\s+|full\s+|consecutive\s+)?"
    r"(day|month|year|week)s?\b",
    re.IGNORECASE,
)
_PERPETUAL = re.compile(r"\b(?:perpetu\w*|in\s+perpetuity|indefinite(?:ly)?|until\s+terminated)\b", re.IGNORECASE)
_SUCCESSIVE = re.compile(
    r"\b(?:successive|additional|year[\s-]+to[\s-]+year|month[\s-]+to[\s-]+month|renew(?:ed|s)?\s+automatically|"
    r"automatic(?:ally)?\s+(?:renew|extend)\w*|each\s+year|annually)\b",
    re.IGNORECASE,
)


def clean(text: str) -> str:
    """Collapse the parser's line breaks and non-breaking spaces into single spaces."""
    return _SPACE.sub(" ", text).strip()


def _number(token: str) -> float | None:
    token = token.lower().replace("\u2011", "-")
    if re.fullmatch(r"\d+(?:\.\d+)?", token):
        return float(token)
    return float(_NUMBER_WORDS[token]) if token in _NUMBER_WORDS else None


def normalize_date(text: str) -> str:
    """'June 21, 1999' -> '6/21/1999'; '___ day of ____, 2004' -> '[]/[]/2004'; '' if no date."""
    match = DATE.search(text)
    if not match:
        return ""
    piece = clean(match.group(0))
    numeric = re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{2,4})", piece)
    if numeric:
        month, day, year = (int(g) for g in numeric.groups())
        if month > 12 >= day:
            month, day = day, month
        if year < 100:
            year += 2000 if year < 50 else 1900
        return f"{month}/{day}/{year}"
    iso = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", piece)
    if iso:
        year, month, day = (int(g) for g in iso.groups())
        return f"{month}/{day}/{year}"
    year_match = re.search(r"\b((?:19|20)\d{2})\b", piece)
    year_text = year_match.group(1) if year_match else "[]"
    month_text = "[]"
    for word in re.findall(r"[A-Za-z]+", piece):
        month_number = _MONTHS.get(word.lower()[:3])
        if month_number and (len(word) <= 4 or word.lower().startswith(_full_month(month_number))):
            month_text = str(month_number)
            break
    body = piece.replace(year_text, " ") if year_match else piece
    day_match = re.search(r"\b(\d{1,2})\s*(?:st|nd|rd|th|t\s*h|d)?\b", body)
    day_text = str(int(day_match.group(1))) if day_match and 1 <= int(day_match.group(1)) <= 31 else "[]"
    if month_text == "[]" and year_text == "[]":
        return ""
    return f"{month_text}/{day_text}/{year_text}"


def _full_month(number: int) -> str:
    """The first three letters of month `number` (1-12)."""
    return MONTHS[number - 1][:3]


def durations(text: str) -> list[tuple[float, str, int]]:
    """(amount, unit, position) of every duration: 'thirty (30) days' -> (30, 'day', i)."""
    out = []
    for match in _DURATION.finditer(text):
        amount = float(match.group(2)) if match.group(2) else _number(match.group(1))
        if amount is not None and amount > 0:
            out.append((amount, match.group(3).lower(), match.start()))
    return out


def format_duration(amount: float, unit: str) -> str:
    number = int(amount) if amount == int(amount) else amount
    return f"{number} {unit}{'' if number == 1 else 's'}"


_RENEWAL_ANCHOR = re.compile(r"renew\w*|extend\w*|extension|successive|thereafter|additional", re.IGNORECASE)
_REPEATING = re.compile(
    r"successive|consecutive|subsequent|year[\s-]+to[\s-]+year|month[\s-]+to[\s-]+month|annual|yearly|"
    r"\b(?:periods|terms)\b|each\s+(?:year|renewal)|one\s+or\s+more|automatic\w*\s+renew|renew\w*\s+automatically",
    re.IGNORECASE,
)
_NOTICE_AFTER = re.compile(r"^[^.;]{0,25}?\b(?:prior|before|notice|in\s+advance)\b", re.IGNORECASE)


def renewal_term(text: str) -> str:
    """CUAD format: '[successive] N years/months' or 'perpetual'.

    The renewal period is the first year/month duration after the renewal wording (the initial
    term comes before it) that is not a notice period ('six (6) months prior written notice').
    """
    clause = clean(text)
    anchor = _RENEWAL_ANCHOR.search(clause)
    tail = clause[anchor.start() :] if anchor else clause
    found = [
        d
        for d in durations(tail)
        if d[1] in ("year", "month") and not _NOTICE_AFTER.search(tail[d[2] : d[2] + 60].split(")", 1)[-1])
    ]
    repeating = _REPEATING.search(tail) is not None or re.search(r"automatic\w*\s+renew", clause, re.I) is not None
    if found:
        amount, unit, _ = found[0]
        term = format_duration(amount, unit)
        return f"successive {term}" if repeating else term
    if re.search(r"year[\s-]+to[\s-]+year|annual|yearly", clause, re.IGNORECASE):
        return "successive 1 year"
    if re.search(r"month[\s-]+to[\s-]+month|monthly", tail, re.IGNORECASE):
        return "successive 1 month"
    if _PERPETUAL.search(clause) or re.search(r"until\s+(?:either|one)\s+party", clause, re.IGNORECASE):
        return "perpetual"
    return ""


def notice_period(text: str) -> str:
    """CUAD format: 'N days/months/years' — the period of notice before the renewal date."""
    clause = clean(text)
    found = durations(clause)
    if not found:
        return ""
    anchor = re.search(r"notice|prior|before|advance", clause, re.IGNORECASE)
    if anchor:
        found.sort(key=lambda d: abs(d[2] - anchor.start()))
    amount, unit, _ = found[0]
    return format_duration(amount, unit)


def _parse_mdy(value: str) -> tuple[int, int, int] | None:
    match = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", value)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def add_duration(start: str, amount: float, unit: str) -> str:
    """m/d/yyyy plus whole years or months, as CUAD computes expiration dates ('' if not computable)."""
    parsed = _parse_mdy(start)
    if parsed is None or amount != int(amount) or unit not in ("year", "month"):
        return ""
    month, day, year = parsed
    months = int(amount) * (12 if unit == "year" else 1)
    total = year * 12 + (month - 1) + months
    return f"{total % 12 + 1}/{day}/{total // 12}"


_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
}
_ANNIVERSARY = re.compile(
    r"\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|\d+(?:st|nd|rd|th))"
    r"\s+anniversary",
    re.IGNORECASE,
)
_START_CUE = re.compile(
    r"(?:commenc\w*|effective|begin\w*|from|take\s+effect|as\s+of|dated)\W*(?:\w+\W+){0,3}$", re.IGNORECASE
)


def _add_to_blank(start: str, amount: float, unit: str) -> str:
    """'[]/[]/2004' plus 2 years -> '[]/[]/2006': CUAD keeps the known parts."""
    match = re.fullmatch(r"(\d{1,2}|\[\])/(\d{1,2}|\[\])/(\d{4})", start)
    if not match or amount != int(amount):
        return ""
    years = int(amount) if unit == "year" else int(amount) // 12
    return f"{match.group(1)}/{match.group(2)}/{int(match.group(3)) + years}"


def expiration(text: str, start_date: str = "") -> str:
    """The end of the initial term as m/d/yyyy, 'perpetual', or '' when it cannot be told.

    An explicit end date wins; a date right after 'commencing'/'effective' is a start date; otherwise a
    term of N years/months (or an 'Nth anniversary') is added to the start date named in the clause or,
    failing that, to `start_date` (the contract's effective date).
    """
    clause = clean(text)
    initial = clause
    anchor = re.search(r"renew\w*|extend\w*|thereafter", clause, re.IGNORECASE)
    if anchor:
        initial = clause[: anchor.start()]
    starts: list[str] = []
    ends: list[str] = []
    for match in DATE.finditer(initial):
        value = normalize_date(match.group(0))
        if value and value != "[]/[]/[]":
            (starts if _START_CUE.search(initial[max(0, match.start() - 40) : match.start()]) else ends).append(value)
    if ends:
        return ends[-1]
    terms = [(a, u) for a, u, _ in durations(initial) if u in ("year", "month")]
    terms += [
        (_ORDINALS.get(m.group(1).lower(), 0) or float(re.sub(r"\D", "", m.group(1))), "year")
        for m in _ANNIVERSARY.finditer(initial)
    ]
    if terms:
        base = starts[0] if starts else start_date
        computed = add_duration(base, *terms[0]) or _add_to_blank(base, *terms[0])
        if computed:
            return computed
    if _PERPETUAL.search(clause) or re.search(r"until\s+(?:\w+\s+){0,6}terminated", clause, re.IGNORECASE):
        return "perpetual"
    return ""


_JURISDICTION = re.compile(
    r"(?i:laws?)\s+(?:in\s+force\s+in\s+|prevailing\s+in\s+)?of\s+(?:the\s+)?"
    r"((?:State|Commonwealth|Province|Republic|Kingdom|Federal\s+Republic|People's\s+Republic|Peoples\s+Republic)"
    r"\s+of\s+(?:the\s+)?)?([A-Z][\w.'\u2019-]*(?:\s+(?:of\s+)?[A-Z][\w.'\u2019-]*){0,4})",
)


_LAW_ADJECTIVES = {
    "english": "England",
    "swiss": "Switzerland",
    "prc": "People's Republic of China",
    "chinese": "People's Republic of China",
    "german": "Germany",
    "french": "France",
    "israeli": "Israel",
    "canadian": "Canada",
    "dutch": "Netherlands",
    "japanese": "Japan",
    "singapore": "Singapore",
    "hong kong": "Hong Kong",
}
_SMALL = frozenset(["of", "the", "and", "in", "to", "by", "with", "as", "for", "or", "without", "its", "any", "on"])


def _title(clause: str) -> str:
    """ALL-CAPS clauses ('THE LAWS OF THE STATE OF DELAWARE') in title case, so names read as names."""
    letters = [c for c in clause if c.isalpha()]
    if letters and sum(c.isupper() for c in letters) > 0.8 * len(letters):
        return " ".join(w.lower() if w.lower() in _SMALL else w.capitalize() for w in clause.split())
    return clause


def governing_law(text: str) -> str:
    """'the laws of the State of New York' -> 'New York'; 'Province of Ontario' -> 'Ontario, Canada'."""
    clause = _title(clean(text).replace("\u2019", "'"))
    places = sorted(US_STATES + CANADIAN_PROVINCES, key=len, reverse=True)
    for name in places:
        pattern = r"(?:State|Commonwealth|Province)\s+of\s+" + re.escape(name) + r"\b"
        if re.search(pattern, clause, re.IGNORECASE):
            return f"{name}, Canada" if name in CANADIAN_PROVINCES else name
    if re.search(r"\b(?:laws?\s+of\s+(?:the\s+)?)?PRC\b", clean(text)):
        return "People's Republic of China"
    match = _JURISDICTION.search(clause)
    if match:
        prefix, place = match.group(1) or "", match.group(2)
        place = re.split(r"\s+(?:and|without|excluding|applicable|including|as|in|to|that|which)\b", place)[0]
        place = place.rstrip(".,;")
        if "People" in prefix:
            return "People's Republic of China"
        for name in places:
            if place.startswith(name):
                return f"{name}, Canada" if name in CANADIAN_PROVINCES else name
        if prefix.strip().lower().startswith("republic"):
            return f"Republic of {place}"
        if place and place not in ("United States", "U.S.", "US"):
            return place
    for name in sorted(US_STATES, key=len, reverse=True):
        if re.search(r"\b" + re.escape(name) + r"\s+law", clause, re.IGNORECASE):
            return name
    for adjective, place in _LAW_ADJECTIVES.items():
        if re.search(r"\b" + adjective + r"\s+laws?\b", clause, re.IGNORECASE):
            return place
    return ""


# the defined term in the first parenthesis after the name, unless another party ("and X") comes first
_ALIAS_AFTER = re.compile(
    r"^(?:(?!\s(?:and|AND)\s)[^();]){0,250}?\([^()]{0,60}?[\"\u201c]([^\"\u201d]{1,60})[\"\u201d]"
)


def party(text: str, start: int, end: int) -> str:
    """A party span with the defined alias that follows it: 'ACCURAY INCORPORATED ("Accuray")'."""
    name = clean(text[start:end])
    following = clean(text[end : end + 400])
    match = _ALIAS_AFTER.match(following)
    if match and clean(match.group(1)) != name:
        return f'{name} ("{clean(match.group(1))}")'
    return name


def party_aliases(party_answers: list[str]) -> dict[str, str]:
    """Defined alias (lowercase) -> the party answer naming it, from answers like 'X Ltd. ("Distributor")'.

    Lets an alias found on its own ('Distributor') answer with the party it names.
    """
    named: dict[str, str] = {}
    for answer in party_answers:
        match = re.fullmatch(r'(.+) \("(.+)"\)', answer)
        if match:
            named.setdefault(match.group(2).lower(), answer)
    return named


def answer_for(category: str, text: str, start: int, end: int, answer_format: str = "", start_date: str = "") -> str:
    """The normalised answer of one extracted clause ('' when the category has no typed answer).

    `start_date` (m/d/yyyy, the contract's effective date if known) turns 'a term of five (5) years'
    into an expiration date.
    """
    clause = text[start:end]
    if category in DATE_CATEGORIES:
        return normalize_date(clause)
    if category == "Expiration Date":
        return expiration(clause, start_date)
    if category == "Governing Law":
        return governing_law(clause)
    if category == "Renewal Term":
        return renewal_term(clause)
    if category == "Notice Period to Terminate Renewal":
        return notice_period(clause)
    if category == "Parties":
        return party(text, start, end)
    if category == "Document Name":
        return clean(clause)
    if category == "Warranty Duration":
        found = [d for d in durations(clean(clause)) if d[1] in ("month", "year", "day")]
        return format_duration(found[0][0], found[0][1]) if found else "Yes"
    if answer_format.startswith(YES_NO_FORMAT):
        return "Yes"
    return ""
