"""The verify strategy's calibrator: one confidence from the embedded model's probability and the LLM's judgement.

A logistic model over a handful of features, global to all categories (a contract yields a few dozen
judged candidates, too few to fit one per category). Fitted by `python -m training.fusion` on runs
whose contracts the embedded fold model never saw, and scored only on other contracts
(`scripts.eval_llm`). The weights depend on the LLM: the shipped ones (`fusion.json`) were fitted on
the local Qwen2.5-Coder-0.5B; refit them for another model with the same two commands.

With no weights file the calibrator is the identity on the embedded probability: the LLM's answers
then change nothing, which is the safe default for an unmeasured model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FUSION_FILE = Path(__file__).resolve().parent / "fusion.json"
FEATURES = ("embedded_logit", "presence_logit", "judged", "yes", "p_yes", "more", "bias")
# Probabilities are clipped to this distance from 0 and 1 before taking log-odds.
EPSILON = 1e-6


def logit(p: float) -> float:
    p = min(max(p, EPSILON), 1 - EPSILON)
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class Evidence:
    """What is known of one candidate span of one category."""

    embedded: float  # the embedded model's calibrated probability (EPSILON if it was not a candidate)
    presence: float  # the embedded model's probability that the contract has the category at all
    judged: bool = False  # the LLM was asked about it
    yes: bool = False  # ... and said yes
    p_yes: float | None = None  # P(yes) from the answer token's log-probabilities, when the server gives them
    more: bool = False  # the LLM named it unasked (a unit the model missed, or a continuation)

    def vector(self) -> list[float]:
        p_yes = self.p_yes if self.p_yes is not None else float(self.yes)
        return [
            logit(self.embedded),
            logit(self.presence),
            float(self.judged),
            float(self.judged and self.yes),
            (p_yes - 0.5) if self.judged else 0.0,
            float(self.more),
            1.0,
        ]


@dataclass(frozen=True)
class Fusion:
    weights: tuple[float, ...]
    fitted_on: str = "identity: the embedded probability unchanged"

    @classmethod
    def identity(cls) -> Fusion:
        return cls(tuple(1.0 if name == "embedded_logit" else 0.0 for name in FEATURES))

    @classmethod
    def load(cls, path: Path | None = None) -> Fusion:
        """The weights in `path` (default: the shipped file), or the identity if there is none."""
        source = path or FUSION_FILE
        if not source.exists():
            return cls.identity()
        raw: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
        if tuple(raw["features"]) != FEATURES:
            raise ValueError(f"{source}: features {raw['features']} are not {list(FEATURES)}")
        return cls(tuple(float(w) for w in raw["weights"]), str(raw.get("fitted_on", "")))

    def dump(self, path: Path, **about: Any) -> None:
        body = {"features": list(FEATURES), "weights": list(self.weights), "fitted_on": self.fitted_on, **about}
        path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")

    def probability(self, evidence: Evidence) -> float:
        z = sum(w * x for w, x in zip(self.weights, evidence.vector(), strict=True))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def fit(evidence: list[Evidence], labels: list[bool], l2: float = 1.0, fitted_on: str = "") -> Fusion:
    """Logistic regression by Newton's method with an L2 penalty that pulls towards the identity.

    Shrinking towards the identity (not towards zero) means that with little data or an uninformative
    LLM the fit stays at "the embedded probability as it is".
    """
    x: npt.NDArray[np.float64] = np.array([e.vector() for e in evidence], dtype=np.float64)
    y: npt.NDArray[np.float64] = np.array(labels, dtype=np.float64)
    prior = np.array(Fusion.identity().weights, dtype=np.float64)
    w = prior.copy()
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        gradient = x.T @ (p - y) + l2 * (w - prior)
        hessian = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return Fusion(tuple(float(v) for v in w), fitted_on)
