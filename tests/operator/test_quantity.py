"""The operator's own Kubernetes quantity parser (the image carries no kubernetes client): it must agree with the
client library's parse_quantity, which the tests still have."""
from __future__ import annotations

import pytest
from kubernetes.utils import parse_quantity as client_parse_quantity

from papertrader_operator.drift import contains, parse_quantity

QUANTITIES = ["500m", "0.5", "1", "100", "1.5k", "2e3", "1e-3", "3n", "12u", "1Ki", "1Gi", "1024Mi", "123Mi",
              "129M", "129e6", "128974848", "2E", "1Ei", 1, 0.25]


@pytest.mark.parametrize("quantity", QUANTITIES)
def test_agrees_with_the_kubernetes_client(quantity) -> None:
    assert parse_quantity(quantity) == client_parse_quantity(quantity)


@pytest.mark.parametrize("bad", ["", "abc", "m", "1Xi", "1.2.3", "nan", "inf", None, True, [1]])
def test_rejects_what_is_not_a_quantity(bad) -> None:
    with pytest.raises(ValueError):
        parse_quantity(bad)


def test_resources_compare_by_value() -> None:
    assert contains({"limits": {"cpu": "0.5", "memory": "1Gi"}}, {"limits": {"cpu": "500m", "memory": "1024Mi"}})
    assert not contains({"limits": {"cpu": "0.5"}}, {"limits": {"cpu": "600m"}})
    assert not contains({"limits": {"cpu": "abc"}}, {"limits": {"cpu": "500m"}})
