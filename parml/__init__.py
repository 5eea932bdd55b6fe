"""parml: parallel model selection for scikit-learn.

Drop-in replacements for scikit-learn's searches and cross-validation that
run every (candidate, split) fit as a task of one scheduler, on local cores
or a cluster; bagged ensembles whose members are tasks of the same scheduler;
and SGD on data shards, averaged every epoch by a spanning-tree AllReduce.
"""

from ._version import __version__
from .allreduce import allreduce
from .ensemble import BaggedForest
from .linear_model import AveragedSGD
from .model_selection import (
    ParallelGridSearchCV,
    ParallelHalvingGridSearchCV,
    ParallelHalvingRandomSearchCV,
    ParallelRandomizedSearchCV,
    cross_val_parallel,
)

__all__ = [
    "AveragedSGD",
    "BaggedForest",
    "ParallelGridSearchCV",
    "ParallelHalvingGridSearchCV",
    "ParallelHalvingRandomSearchCV",
    "ParallelRandomizedSearchCV",
    "__version__",
    "allreduce",
    "cross_val_parallel",
]
