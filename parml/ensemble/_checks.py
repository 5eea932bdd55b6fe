"""Checks of a forest's parameters against the data it is about to fit.

The parameters' types and ranges are declared in ``_parameter_constraints``;
what is checked here depends on the data as well (partition sizes, the number
of features) or on several parameters together.
"""

from numbers import Integral

from ._members import accepts_sample_weight


def check_fit(forest, estimator, parts):
    """Raise a ValueError that names the parameter and the fix, if the fit cannot run.

    Parameters
    ----------
    forest : BaggedForest
        The forest about to be fitted (its parameters are read).
    estimator : estimator object
        The member every member is cloned from.
    parts : Partitions
        The data, in one or more partitions.
    """
    if forest.oob_score and not forest.bootstrap:
        raise ValueError("oob_score=True needs bootstrap=True: only samples drawn "
                         "with replacement leave rows out of bag. Set bootstrap=True "
                         "or oob_score=False.")
    if forest.oob_score and forest.warm_start:
        raise ValueError("oob_score=True cannot be combined with warm_start=True: "
                         "the out-of-bag estimate needs every member's rows. Fit "
                         "with warm_start=False, or set oob_score=False.")
    smallest = min(parts.n_samples)
    if isinstance(forest.max_samples, Integral) and forest.max_samples > smallest:
        where = "the smallest partition has" if len(parts) > 1 else "X has"
        raise ValueError(f"max_samples={forest.max_samples} is more than the {smallest} "
                         f"samples {where}; pass at most {smallest}, or a fraction "
                         "in (0, 1].")
    if isinstance(forest.max_features, Integral) and forest.max_features > parts.n_features:
        raise ValueError(f"max_features={forest.max_features} is more than the "
                         f"{parts.n_features} features of X; pass at most "
                         f"{parts.n_features}, or a fraction in (0, 1].")
    if parts.sample_weight is not None and not accepts_sample_weight(estimator):
        raise ValueError(f"sample_weight was given but {type(estimator).__name__}.fit "
                         "does not accept sample_weight; drop the weights or use a "
                         "member that takes them.")
