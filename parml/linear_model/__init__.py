"""Linear models trained in parallel: :class:`AveragedSGD`."""

from ._averaged_sgd import AveragedSGD

__all__ = ["AveragedSGD"]
