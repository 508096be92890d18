"""Size: the length in bytes of the packed artifact the candidate writes."""

from __future__ import annotations

from evaluators._base import Candidate, Evaluator


class SizeEvaluator(Evaluator):
    """``size_bytes`` is ``len(artifact)``: the very bytes written to disk, header included."""

    def evaluate(self, candidate: Candidate) -> dict[str, float]:
        return {"size_bytes": float(len(candidate.artifact))}
