"""CUAD corpus access for training: labels, parser text (cached), scorer-compatible words, folds.

Texts come from the production parser so that training offsets are the offsets the service sees;
parsing all 419 PDFs takes ~30 s, so the texts are cached outside the repository, in a directory per
parser version (`parser_version()`: the parser's PARSER_NAME and the PyMuPDF release), so a new parser
never serves old texts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The CUAD corpus, wherever it is read (training, bench, scripts, tests): CUAD_DIR, else ../shared/cuad.
DEFAULT_CUAD = Path(os.environ.get("CUAD_DIR", str(ROOT.parent / "shared" / "cuad")))
DEFAULT_SCORER = Path(os.environ.get("CUAD_SCORER", str(ROOT.parent / "shared" / "eval" / "score_cuad.py")))
CACHE = Path(os.environ.get("CLAUSEWORK_CACHE", str(Path.home() / ".cache" / "clausework"))) / "cuad-text"

_PUNCT = str.maketrans("", "", string.punctuation)


def words(text: str) -> set[str]:
    """The scorer's bag of words: lowercase, ASCII punctuation removed, articles dropped."""
    return {w for w in text.lower().translate(_PUNCT).split() if w not in ("a", "an", "the")}


def jaccard(a: set[str], b: set[str]) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 0.0


@dataclass
class Contract:
    """One labelled contract: parser text and gold contexts per category."""

    id: str
    source_name: str
    text: str
    gold: dict[str, list[str]]
    answers: dict[str, str]
    gold_words: dict[str, list[set[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.gold_words = {c: [words(x) for x in xs] for c, xs in self.gold.items()}

    @property
    def group(self) -> str:
        """The raw filer key (source_name up to its first "_"), as the model's inner CV split groups.

        The outer cross-validation groups by `training.groups.cv_groups` instead, which also joins
        spelling variants of one filer and contracts sharing label text.
        """
        return self.source_name.split("_")[0].upper()


def _parse(pdf: Path) -> str:
    from clausework.pdf import parse_pdf  # pymupdf only for training, never at run time

    return parse_pdf(pdf.read_bytes()).text


def parser_version() -> str:
    """What the cached texts depend on: the production parser's version and the PyMuPDF release."""
    from clausework.pdf import PARSER_NAME

    try:
        pymupdf = metadata.version("pymupdf")
    except metadata.PackageNotFoundError:
        pymupdf = "none"
    return f"{PARSER_NAME}+pymupdf-{pymupdf}"


def text_cache(version: str | None = None) -> Path:
    """The parser-text cache directory of one parser version."""
    return CACHE / re.sub(r"[^A-Za-z0-9.+-]+", "-", version or parser_version())


def write_atomic(path: Path, data: str) -> None:
    """Write `data` to a temporary file beside `path` and rename it into place: never half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(data, encoding="utf-8")
        partial.replace(path)  # os.replace: atomic on POSIX
    finally:
        partial.unlink(missing_ok=True)


def load_texts(cuad_dir: Path, records: list[dict[str, Any]]) -> dict[str, str]:
    """Parser text per contract id, from the cache or by parsing the PDF."""
    directory = text_cache()
    directory.mkdir(parents=True, exist_ok=True)
    texts = {}
    for record in records:
        cached = directory / f"{record['id']}.txt"
        if not cached.exists():
            write_atomic(cached, _parse(cuad_dir / record["pdf"]))
        texts[record["id"]] = cached.read_text(encoding="utf-8")
    return texts


def load_corpus(cuad_dir: Path = DEFAULT_CUAD) -> list[Contract]:
    records = [json.loads(line) for line in (cuad_dir / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = load_texts(cuad_dir, records)
    return [from_record(r, texts[r["id"]]) for r in records]


def from_record(record: dict[str, Any], text: str = "") -> Contract:
    """A labels.jsonl record as a Contract (without its text: enough for grouping and folds)."""
    return Contract(
        id=record["id"],
        source_name=record.get("source_name", record["id"]),
        text=text,
        gold={c: v["contexts"] for c, v in record["clauses"].items()},
        answers={c: str(v.get("answer", "")) for c, v in record["clauses"].items()},
    )


def categories(cuad_dir: Path = DEFAULT_CUAD) -> list[str]:
    data = json.loads((cuad_dir / "categories.json").read_text(encoding="utf-8"))
    return [c["name"] for c in data]


def labels_sha256(cuad_dir: Path = DEFAULT_CUAD) -> str:
    return hashlib.sha256((cuad_dir / "labels.jsonl").read_bytes()).hexdigest()


def corpus_sha256(contracts: list[Contract]) -> str:
    """Hash of the training input as the model saw it: parser texts and labels, in order."""
    digest = hashlib.sha256()
    for contract in contracts:
        digest.update(contract.id.encode())
        digest.update(contract.text.encode())
        digest.update(json.dumps(contract.gold, sort_keys=True).encode())
    return digest.hexdigest()


def folds(contracts: list[Contract], k: int, seed: int = 13, groups: Sequence[str] | None = None) -> list[int]:
    """Fold index per contract; whole groups go to one fold (group k-fold, balanced by size).

    `groups` is a group key per contract (default: the raw filer key, `Contract.group`).
    """
    keys = list(groups) if groups is not None else [c.group for c in contracts]
    if len(keys) != len(contracts):
        raise ValueError(f"{len(keys)} group keys for {len(contracts)} contracts")
    members_of: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        members_of.setdefault(key, []).append(index)
    ordered = sorted(members_of.values(), key=lambda g: (-len(g), hashlib.md5(f"{seed}{g[0]}".encode()).hexdigest()))
    sizes = [0] * k
    assignment = [0] * len(contracts)
    for members in ordered:
        fold = min(range(k), key=lambda f: (sizes[f], f))
        sizes[fold] += len(members)
        for index in members:
            assignment[index] = fold
    return assignment
