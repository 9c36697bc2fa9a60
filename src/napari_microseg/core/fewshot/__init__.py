"""Few-shot "find similar": label a few objects, get every similar one with a score.

See :mod:`.session` for the workflow and :mod:`.evaluation` for the
simulated-user benchmark (``microseg fewshot-eval``).
"""

from .session import Candidates, FindSimilar, find_similar

__all__ = ["Candidates", "FindSimilar", "find_similar"]
