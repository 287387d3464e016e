"""Classification metrics without extra dependencies (AUC with tied ranks, log loss, precision/recall)."""

from __future__ import annotations

import math

import numpy as np


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN with one class only."""
    y = np.asarray(y, dtype=bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(p, kind="mergesort")
    sorted_p = np.asarray(p)[order]
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(len(p))
    ranks[order] = np.repeat(average, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def classification_report(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC, accuracy vs the base rate, log loss, and precision/recall of the buy (p >= T) and sell (p <= 1-T)
    signals at the trading threshold T."""
    y = np.asarray(y, dtype=np.float64)
    base = float(y.mean()) if len(y) else math.nan
    buy = p >= threshold
    sell = p <= 1.0 - threshold
    pos = y == 1
    neg = ~pos
    return {
        "n": int(len(y)),
        "auc": auc(y, p),
        "accuracy": float(((p >= 0.5) == pos).mean()) if len(y) else math.nan,
        "base_rate": base,
        "majority_accuracy": max(base, 1.0 - base),
        "log_loss": log_loss(y, p),
        "base_log_loss": log_loss(y, np.full(len(y), base)) if len(y) else math.nan,
        "mean_p": float(np.mean(p)) if len(y) else math.nan,
        "buy_signals": int(buy.sum()),
        "buy_precision": float(pos[buy].mean()) if buy.any() else math.nan,
        "buy_recall": float(buy[pos].mean()) if pos.any() else math.nan,
        "sell_signals": int(sell.sum()),
        "sell_precision": float(neg[sell].mean()) if sell.any() else math.nan,
        "sell_recall": float(sell[neg].mean()) if neg.any() else math.nan,
    }
