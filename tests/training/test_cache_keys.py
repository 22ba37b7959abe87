"""Cache keys of training: parser texts (per parser version), prepared features and fold models."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from training import data

ROOT = Path(__file__).resolve().parents[2]


def test_text_cache_is_per_parser_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import clausework.pdf as pdftext

    before = data.parser_version()
    assert pdftext.PARSER_NAME in before
    monkeypatch.setattr(pdftext, "PARSER_NAME", "pymupdf-blocks/2")
    after = data.parser_version()
    assert after != before
    assert data.text_cache() != data.text_cache(before)
    assert data.text_cache().parent == data.CACHE


def test_load_texts_reparses_when_the_parser_version_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []

    def parse(pdf: Path) -> str:
        parsed.append(pdf.name)
        return f"text of {pdf.name} #{len(parsed)}"

    monkeypatch.setattr(data, "CACHE", tmp_path / "cuad-text")
    monkeypatch.setattr(data, "_parse", parse)
    records = [{"id": "c1", "pdf": "c1.pdf"}]
    version = ["pymupdf-blocks/1+pymupdf-1"]
    monkeypatch.setattr(data, "parser_version", lambda: version[0])
    assert data.load_texts(tmp_path, records) == {"c1": "text of c1.pdf #1"}
    assert data.load_texts(tmp_path, records) == {"c1": "text of c1.pdf #1"}  # cached
    version[0] = "pymupdf-blocks/2+pymupdf-1"
    assert data.load_texts(tmp_path, records) == {"c1": "text of c1.pdf #2"}  # a new parser: parsed again
    assert len(parsed) == 2
    assert not list((tmp_path / "cuad-text").rglob(".*.tmp"))  # no temp file left behind


def test_write_atomic_never_leaves_half_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "c1.txt"
    data.write_atomic(target, "old")
    assert target.read_text(encoding="utf-8") == "old"

    def broken(self: Path, text: str, encoding: str | None = None) -> int:
        with self.open("w", encoding=encoding) as handle:
            handle.write(text[:2])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", broken)
    with pytest.raises(OSError, match="disk full"):
        data.write_atomic(target, "new text")
    monkeypatch.undo()
    assert target.read_text(encoding="utf-8") == "old"  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["c1.txt"]


# --- features and fold models (need the `train` extra: scikit-learn, scipy) ---


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fake repository with one file per feature source (the keys read files, not modules)."""
    for name in [
        "clausework/model/segmentation.py",
        "clausework/model/features.py",
        "clausework/model/spans.py",
        "clausework/model/ranker.py",
        "clausework/model/embedded.py",
        "clausework/model/second_stage.py",
        "clausework/model/trees.py",
        "clausework/model/extent.py",
        "clausework/model/encoder.py",
        "clausework/model/minilm-l6/encoder.npz",
        "clausework/model/minilm-l6/tokenizer.json",
        "clausework/answers.py",
        "training/model.py",
        "training/second_stage.py",
        "training/extent.py",
        "training/dense.py",
        "training/data.py",
        "training/groups.py",
        "training/crossval.py",
    ]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {name}\n", encoding="utf-8")
    return tmp_path


def corpus() -> list[data.Contract]:
    return [
        data.Contract(id=f"c{i}", source_name=f"F{i}INC_01_01_2000-X.PDF", text=f"text {i}", gold={}, answers={})
        for i in range(4)
    ]


@pytest.mark.parametrize(
    "edited",
    [
        "clausework/model/segmentation.py",
        "clausework/model/features.py",
        "clausework/model/spans.py",
        "clausework/model/ranker.py",
        "clausework/model/embedded.py",
        "clausework/model/second_stage.py",
        "clausework/model/trees.py",
        "clausework/model/extent.py",
        "clausework/model/encoder.py",
        "clausework/model/minilm-l6/encoder.npz",
        "clausework/model/minilm-l6/tokenizer.json",
        "training/model.py",
        "training/second_stage.py",
        "training/extent.py",
        "training/dense.py",
        "training/data.py",
        "training/groups.py",
    ],
)
def test_an_edit_to_a_feature_source_changes_both_keys(tree: Path, edited: str) -> None:
    pytest.importorskip("sklearn")
    from training.heldout import fold_cache_key
    from training.model import Params
    from training.prepare import features_key

    contracts, params, assignment = corpus(), Params(), [0, 1, 2, 3]
    features, folds = features_key(contracts, params, tree), fold_cache_key(contracts, 4, params, assignment, tree)
    with (tree / edited).open("a", encoding="utf-8") as handle:
        handle.write("x = 1\n")
    assert features_key(contracts, params, tree) != features
    assert fold_cache_key(contracts, 4, params, assignment, tree) != folds


def test_keys_follow_new_model_modules_data_params_and_folds(tree: Path) -> None:
    pytest.importorskip("sklearn")
    from training.heldout import fold_cache_key
    from training.model import Params
    from training.prepare import features_key

    contracts, params = corpus(), Params()
    features, folds = features_key(contracts, params, tree), fold_cache_key(contracts, 4, params, [0, 1, 2, 3], tree)
    # code outside the features (answers at extraction time, evaluation scripts) keys nothing
    for name in ("clausework/answers.py", "training/crossval.py"):
        (tree / name).write_text("changed = True\n", encoding="utf-8")
    assert features_key(contracts, params, tree) == features
    assert fold_cache_key(contracts, 4, params, [0, 1, 2, 3], tree) == folds
    # a new clausework/model/*.py is covered by the glob
    (tree / "clausework/model/windows.py").write_text("# new\n", encoding="utf-8")
    features2 = features_key(contracts, params, tree)
    assert features2 != features
    # other folds, other fold models; the same features
    assert fold_cache_key(contracts, 4, params, [1, 0, 2, 3], tree) != fold_cache_key(
        contracts, 4, params, [0, 1, 2, 3], tree
    )
    # training parameters key the fold models; labelling parameters key both
    folds2 = fold_cache_key(contracts, 4, params, [0, 1, 2, 3], tree)
    assert fold_cache_key(contracts, 4, Params(unit_c=1.0), [0, 1, 2, 3], tree) != folds2
    assert features_key(contracts, Params(unit_c=1.0), tree) == features2
    assert features_key(contracts, Params(fragment_min_words=6), tree) != features2
    # parser texts and labels key both
    edited = corpus()
    edited[0].text = "other text"
    assert features_key(edited, params, tree) != features2
    assert fold_cache_key(edited, 4, params, [0, 1, 2, 3], tree) != folds2


def test_a_missing_feature_source_is_an_error(tree: Path) -> None:
    pytest.importorskip("sklearn")
    from training.model import Params
    from training.prepare import features_key

    (tree / "training/model.py").unlink()
    with pytest.raises(FileNotFoundError):
        features_key(corpus(), Params(), tree)


def _local_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            file = ROOT / (name.replace(".", "/") + ".py")
            if name.startswith(("clausework", "training")) and file.exists():
                found.add(file.relative_to(ROOT).as_posix())
    return found


def test_feature_sources_cover_what_the_feature_code_imports() -> None:
    """Every repository module the feature and fitting code imports is keyed, or known not to shape weights."""
    pytest.importorskip("sklearn")
    from training.prepare import feature_source_files

    keyed = {p.relative_to(ROOT).as_posix() for p in feature_source_files(ROOT)}
    # answers: typed answers at extraction time only; chunking: a type for the OpenAI backend's selector;
    # clauses: the result type; pdf: the parser texts it makes are keyed by parser version
    # (data.parser_version), not by its source
    not_shaping = {"clausework/answers.py", "clausework/chunking.py", "clausework/clauses.py", "clausework/pdf.py"}
    seen, todo = set(), sorted(k for k in keyed if k.endswith(".py"))  # the rest are weights and data
    while todo:
        source = todo.pop()
        if source in seen:
            continue
        seen.add(source)
        todo.extend(_local_imports(ROOT / source) - not_shaping)
    assert seen <= keyed, f"imported by the feature code but not in FEATURE_SOURCES: {sorted(seen - keyed)}"
