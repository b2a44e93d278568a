"""Detection figures from scores and targets, and the operating threshold (numpy only)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float64]
Targets = npt.NDArray[np.int8]
ROBUST_SPREADS = 6.0  # threshold without labels: median + 6 scaled MADs of the training scores


def figures(scores: Scores, y: Targets, threshold: float) -> dict[str, float]:
    """precision, recall, f1 at threshold and roc_auc over the labelled windows (y 0 or 1)."""
    known = y >= 0
    s, t = scores[known], y[known] == 1
    alarm = s >= threshold
    tp, fp, fn = int((alarm & t).sum()), int((alarm & ~t).sum()), int((~alarm & t).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "roc_auc": roc_auc(s, t),
            "windows": float(t.size), "faults": float(t.sum())}


def roc_auc(scores: Scores, positive: npt.NDArray[np.bool_]) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged); 0.5 if one class."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < scores.size:  # average the ranks of tied scores
        j = i
        while j + 1 < scores.size and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def choose_threshold(scores: Scores, y: Targets, train_scores: Scores) -> float:
    """The validation threshold with the best F1 when both classes are labelled there.

    Without labels, the training windows' scores set it: median plus six
    scaled median absolute deviations, which unlabelled faults among them
    (a minority) barely move, unlike a percentile.
    """
    known = y >= 0
    if not (y[known] == 1).any() or not (y[known] == 0).any():
        median = float(np.median(train_scores))
        mad = 1.4826 * float(np.median(np.abs(train_scores - median)))
        return median + ROBUST_SPREADS * max(mad, 1e-9)
    best, best_f1 = float(scores.max()), -1.0
    for candidate in np.unique(scores[known]):
        f1 = figures(scores, y, float(candidate))["f1"]
        if f1 > best_f1:
            best, best_f1 = float(candidate), f1
    return best
