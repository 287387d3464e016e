"""The sequence models. All take a batch of windows ``(B, seq_len, F)`` of scaled features and return logits ``(B,)``.

- ``tconv`` (default): a causal temporal convolution whose kernel spans the whole window (``hidden`` output
  channels, i.e. one linear map of the flattened window), ReLU, dropout and a logistic head. Chosen because one
  prediction is two small matrix-vector products (~30-40 us on one CPU thread), far below the 1 ms budget.
- ``gru`` / ``lstm``: a one-layer recurrent net over the window, last hidden state -> logistic head. More
  expressive, but 10-30x slower per candle on CPU (see docs/ml.md); fine for offline work.
"""

from __future__ import annotations

import torch
from torch import nn

ARCHITECTURES = ("tconv", "gru", "lstm")


class WindowConvNet(nn.Module):
    def __init__(self, n_features: int, seq_len: int, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Linear(n_features * seq_len, hidden)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.conv(x.flatten(1))))).squeeze(-1)


class RecurrentNet(nn.Module):
    def __init__(self, n_features: int, hidden: int, kind: str = "gru", dropout: float = 0.1) -> None:
        super().__init__()
        self.rnn = (nn.GRU if kind == "gru" else nn.LSTM)(n_features, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(self.drop(out[:, -1])).squeeze(-1)


def build_model(arch: str, n_features: int, seq_len: int, hidden: int, dropout: float = 0.1) -> nn.Module:
    if arch == "tconv":
        return WindowConvNet(n_features, seq_len, hidden, dropout)
    if arch in ("gru", "lstm"):
        return RecurrentNet(n_features, hidden, arch, dropout)
    raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
