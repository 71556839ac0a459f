"""Schemathesis 4's lazy (fixture-loaded) schemas rename the running test after each operation
through `node._nodeid`, which pytest 9 no longer has; give it one to rename."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
