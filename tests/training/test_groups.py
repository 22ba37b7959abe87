"""Cross-validation groups (training.groups): filer-key normalisation and label-text overlap."""

from __future__ import annotations

import json

import pytest

from training.data import DEFAULT_CUAD as CUAD
from training.data import Contract, folds
from training.groups import (
    cv_folds,
    cv_groups,
    filer_key,
    group_indices,
    overlap,
    overlapping_pairs,
    shingles,
)

# Spelling variants of one filer in the CUAD dev split (old-style and new-style EDGAR file names).
VARIANTS = [
    (
        "ARMSTRONGFLOORING,INC_01_07_2019-EX-10.2-INTELLECTUAL PROPERTY AGREEMENT.PDF",
        "ArmstrongFlooringInc_20190107_8-K_EX-10.2_11471795_EX-10.2_Intellectual Property Agreement.pdf",
    ),
    (
        "BELLRINGBRANDS,INC_02_07_2020-EX-10.18-MASTER SUPPLY AGREEMENT.PDF",
        "BellringBrandsInc_20190920_S-1_EX-10.12_11817081_EX-10.12_Manufacturing Agreement1.pdf",
    ),
    (
        "GRIDIRONBIONUTRIENTS,INC_02_05_2020-EX-10.3-SUPPLY AGREEMENT.PDF",
        "GridironBionutrientsInc_20171206_8-K_EX-10.1_10972555_EX-10.1_Distributor Agreement.pdf",
    ),
    (
        "VNUE,INC_07_10_2015-EX-10.1-SPONSORSHIP AGREEMENT.PDF",
        "VnueInc_20150914_8-K_EX-10.1_9259571_EX-10.1_Promotion Agreement.pdf",
    ),
]


def sentence(seed: str, n: int) -> str:
    """n distinct words, distinct per seed."""
    return " ".join(f"{seed}{i}" for i in range(n))


@pytest.mark.parametrize(("a", "b"), VARIANTS)
def test_filer_key_joins_comma_and_case_variants(a: str, b: str) -> None:
    assert a.split("_")[0].upper() != b.split("_")[0].upper()  # the old key split them
    assert filer_key(a) == filer_key(b)


def test_filer_key_normalisation() -> None:
    assert filer_key("ARMSTRONGFLOORING,INC_01_07_2019-EX-10.2-X.PDF") == "ARMSTRONGFLOORING"
    assert filer_key("ADMA BioManufacturing, LLC -  Amendment #3 to Manufacturing Agreement .PDF") == (
        "ADMABIOMANUFACTURING"
    )
    assert filer_key("Antares Pharma, Inc. - Manufacturing Agreement.PDF") == "ANTARESPHARMA"
    # the company name may contain "_": everything before the filing date is the company
    assert filer_key("BABCOCK_WILCOXENTERPRISES,INC_08_04_2015-EX-10.17-IP AGREEMENT.PDF") == (
        "BABCOCKWILCOXENTERPRISES"
    )
    # stacked suffixes; never stripped to (almost) nothing
    assert filer_key("LohaCompanyltd_20191209_F-1_EX-10.16_11917878_EX-10.16_Supply Agreement.pdf") == "LOHA"
    assert filer_key("SAINC_01_01_2000-EX-10-X.PDF") == "SAINC"
    # different companies stay apart
    assert filer_key("ACCURAYINC_09_01_2010-EX-10.31-X.PDF") != filer_key("ADAMSGOLFINC_03_21_2005-EX-10.17-X.PDF")


def test_shingles_are_eight_scorer_words_within_one_context() -> None:
    assert shingles(["one two three four five six seven"]) == set()  # shorter than 8 words
    got = shingles(["The One, two three four five six seven eight nine.", "x y"])
    # articles dropped, punctuation removed, lower case: 9 words give 2 shingles
    assert got == {
        ("one", "two", "three", "four", "five", "six", "seven", "eight"),
        ("two", "three", "four", "five", "six", "seven", "eight", "nine"),
    }
    # no shingle spans two contexts
    assert shingles(["a1 a2 a3 a4", "a5 a6 a7 a8"]) == set()


def test_overlap_is_intersection_over_the_smaller_set() -> None:
    a: set[tuple[str, ...]] = {("w",) * 8, ("x",) * 8, ("y",) * 8, ("z",) * 8}
    b: set[tuple[str, ...]] = {("w",) * 8, ("x",) * 8}
    c: set[tuple[str, ...]] = {("w",) * 8, ("q",) * 8}
    assert overlap(a, b) == 1.0  # b lies inside a
    assert overlap(a, c) == 0.5
    assert overlap(a, set()) == 0.0


def test_overlapping_pairs_threshold_and_shared_floor() -> None:
    template = sentence("t", 60)  # 53 shingles
    texts = [
        [template],
        [template, sentence("u", 60)],  # overlap 53/53 = 1.0 with contract 0
        [sentence("v", 60)],
        [sentence("t", 30) + " " + sentence("w", 60)],  # 23 of contract 0's shingles: overlap 23/53 < 0.5
    ]
    pairs = overlapping_pairs(texts)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]
    assert pairs[0][2] == 1.0
    # one short boilerplate sentence shared with a one-sentence amendment is not a shared agreement
    boiler = "this agreement shall be governed by laws of state of new york"
    assert overlapping_pairs([[boiler], [boiler, sentence("z", 80)]]) == []
    assert [(i, j) for i, j, _ in overlapping_pairs([[boiler], [boiler, sentence("z", 80)]], min_shared=1)] == [(0, 1)]


def test_groups_merge_across_filers_transitively() -> None:
    template = sentence("t", 60)
    names = [
        "ACMEINC_01_01_2000-EX-10-A.PDF",
        "AcmeInc_20000101_8-K_EX-10_1_EX-10_B.pdf",  # same filer as 0
        "OTHERCORP_01_01_2001-EX-10-C.PDF",  # another filer, same template as 1
        "THIRDLTD_01_01_2002-EX-10-D.PDF",  # unrelated
    ]
    texts = [[sentence("a", 40)], [template], [template, sentence("c", 20)], [sentence("d", 40)]]
    ids = group_indices(names, texts)
    assert ids[0] == ids[1] == ids[2]
    assert ids[3] != ids[0]


def contract(source_name: str, gold: dict[str, list[str]], cid: str) -> Contract:
    return Contract(id=cid, source_name=source_name, text="", gold=gold, answers={})


def test_folds_keep_groups_together_and_default_is_the_raw_filer_key() -> None:
    contracts = [contract(a, {}, f"a{i}") for i, (a, _b) in enumerate(VARIANTS)]
    contracts += [contract(b, {}, f"b{i}") for i, (_a, b) in enumerate(VARIANTS)]
    contracts += [contract(f"FILER{i}INC_01_01_2000-EX-10-X.PDF", {}, f"f{i}") for i in range(12)]
    keys = cv_groups(contracts)
    assert len(set(keys)) == len(VARIANTS) + 12
    assigned = cv_folds(contracts, 5)
    n = len(VARIANTS)
    assert all(assigned[i] == assigned[n + i] for i in range(n))
    # without groups, folds() groups by Contract.group (the model's inner split: unchanged)
    assert folds(contracts, 5) == folds(contracts, 5, groups=[c.group for c in contracts])
    with pytest.raises(ValueError):
        folds(contracts, 5, groups=["x"])


@pytest.mark.skipif(not (CUAD / "labels.jsonl").exists(), reason="needs ../shared/cuad")
def test_cuad_dev_split_duplicates_share_a_fold() -> None:
    records = [json.loads(x) for x in (CUAD / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    contracts = [
        contract(r["source_name"], {c: v["contexts"] for c, v in r["clauses"].items()}, r["id"]) for r in records
    ]
    assigned = dict(zip((c.id for c in contracts), cv_folds(contracts, 5), strict=True))
    by_name = {c.source_name: c.id for c in contracts}
    for a, b in VARIANTS[:1]:
        assert assigned[by_name[a]] == assigned[by_name[b]]
    for prefix in ("ARMSTRONG", "BELLRING", "GRIDIRON", "VNUE"):
        fold_set = {assigned[c.id] for c in contracts if c.source_name.upper().startswith(prefix)}
        assert len(fold_set) == 1, prefix
    # the same operations-and-maintenance template filed by two companies
    pair = [c.id for c in contracts if c.source_name.startswith(("SANDRIDGEENERGYINC", "VERTEXENERGYINC"))]
    assert len(pair) == 2 and assigned[pair[0]] == assigned[pair[1]]
