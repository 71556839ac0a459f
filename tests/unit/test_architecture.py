"""The pure core imports no web framework, database, HTTP client or FHIR models."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"
FORBIDDEN = ("fastapi", "starlette", "sqlalchemy", "httpx", "fhir", "alembic", "uvicorn")
PURE = sorted([*(SERVICE / "domain").rglob("*.py"), *(SERVICE / "rules").rglob("*.py")])


def _imports(module: Path) -> set[str]:
    imported = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    return imported


@pytest.mark.parametrize("module", PURE, ids=lambda p: str(p.relative_to(SERVICE)))
def test_domain_and_rules_stay_pure(module: Path) -> None:
    imported = _imports(module)
    offending = sorted(n for n in imported if n.split(".")[0] in FORBIDDEN or n.startswith("service.fhir"))
    assert offending == []


def test_the_service_validates_with_the_r4_definitions_not_fhir_resources() -> None:
    """R4 validation follows the StructureDefinitions (fhir/validation.py); the R4B models are not
    used by the service (they accept what R4 forbids)."""
    users = [p for p in SERVICE.rglob("*.py")
             if any(name.startswith("fhir.resources") for name in _imports(p))]
    assert users == []
