"""base64Binary is checked without the spec regex's exponential backtracking, with the same answer."""

from __future__ import annotations

import itertools
import random
import re

from service.fhir.validation import _BASE64_REGEX, _base64, definitions, validate_r4

SPEC = re.compile(_BASE64_REGEX, re.ASCII)


def test_the_base64_check_answers_as_the_spec_regex() -> None:
    assert definitions().primitives["base64Binary"].pattern == _BASE64_REGEX  # type: ignore[union-attr]
    alphabet = ["A", "=", "+", "/", "0", " ", "\n", "\t", "\x0b", "\x0c", "\r", "!", "é", "\x1c", "\xa0", "-"]
    small = ["".join(chars) for n in range(7) for chars in itertools.product("A= \n!\x1c", repeat=n)]
    rng = random.Random(14)
    rare = [rng.choice(alphabet) for _ in range(20_000)]
    mixed = ["".join(rng.choice(["AAAA", "AA", "A", " ", "\n", *alphabet]) for _ in range(rng.randrange(1, 9)))
             for _ in range(20_000)]
    for text in small + rare + mixed + ["QUJD\n", "QUJD\n\n", " QUJDRA== ", "QUJ D", "QUJDRA=="]:
        assert _base64(text) == (SPEC.match(text) is not None), repr(text)


def test_a_hostile_base64_value_is_refused_not_backtracked_for_hours() -> None:
    """'AAAA  ' repeated and one wrong character: the spec regex takes ~3x longer per group (13 s
    at 16 groups); 40 groups would not finish."""
    report = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "x"},
              "presentedForm": [{"contentType": "application/pdf", "data": "AAAA  " * 40 + "!"}]}
    issues = validate_r4(report)
    assert [(i.expression, i.code) for i in issues] == [("DiagnosticReport.presentedForm[0].data", "value")]
    report["presentedForm"][0]["data"] = "QUJD RA==\n" * 10_000
    assert validate_r4(report) == []
