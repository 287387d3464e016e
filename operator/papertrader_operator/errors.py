"""The operator's exception family: :class:`OperatorError`, one branch of the product's tree
(``papertrader.errors.PapertraderError``; the whole tree is drawn there).

    OperatorError
    ├── kube.ApiError               a failed Kubernetes API request (status + server message)
    ├── reconcile.InvalidSpec       a PaperTrader spec that can never be reconciled as it is
    └── control_tokens.ControlTokenError  the trader's control Secret holds no usable token
"""

from __future__ import annotations

from papertrader.errors import PapertraderError


class OperatorError(PapertraderError):
    """Base of the operator's errors (all handled inside the operator; none reaches the ``papertrader`` CLI)."""
