"""A wrong pathway file stops start-up with the file, the line and the field at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.rules.loader import PathwayDefinitionError, load_pathway, load_pathways
from tests.conftest import PATHWAY_FILE


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = PATHWAY_FILE.read_text()
    assert old in text
    path = tmp_path / "lumbar-radiculopathy.v1.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_the_shipped_pathway_loads_with_id_and_version() -> None:
    pathway = load_pathway(PATHWAY_FILE)
    assert (pathway.definition.id, pathway.definition.version) == ("lumbar-radiculopathy", "1.0.0")


def test_a_bad_parameter_names_file_line_and_field(tmp_path: Path) -> None:
    path = _broken(tmp_path, "new_within: P14D", "new_within: fortnight")
    with pytest.raises(PathwayDefinitionError) as error:
        load_pathway(path)
    message = str(error.value)
    assert f"{path}:{_line_of(path, 'new_within: fortnight')}: rules[0].params.new_within" in message


def test_an_unknown_check_is_named(tmp_path: Path) -> None:
    path = _broken(tmp_path, "check: serious_pathology", "check: serious_pathologee")
    with pytest.raises(PathwayDefinitionError, match=r"rules\[1\]\.check: unknown check 'serious_pathologee'"):
        load_pathway(path)


def test_an_unknown_concept_in_parameters_is_caught_at_load(tmp_path: Path) -> None:
    path = _broken(tmp_path, "fever_concept: body_temperature", "fever_concept: body_temp")
    with pytest.raises(PathwayDefinitionError, match="unknown concept 'body_temp'"):
        load_pathway(path)


def test_a_rule_may_only_refer_to_rules_above_it(tmp_path: Path) -> None:
    path = _broken(tmp_path, "escalating_rules: [R1, R2, R3, R4]\n      physiotherapy",
                   "escalating_rules: [R1, R2, R3, R5]\n      physiotherapy")
    with pytest.raises(PathwayDefinitionError, match="names 'R5', which is not a rule listed above"):
        load_pathway(path)


def test_an_undeclared_code_system_alias_is_rejected(tmp_path: Path) -> None:
    path = _broken(tmp_path, "icd10#G83.4", "icd11#G83.4")
    with pytest.raises(PathwayDefinitionError, match="undeclared system alias 'icd11'"):
        load_pathway(path)


def test_yaml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("id: x\nrules: [\n")
    with pytest.raises(PathwayDefinitionError, match=rf"{path}:\d+"):
        load_pathway(path)


def test_duplicate_id_and_version_in_one_directory_is_fatal(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(PATHWAY_FILE.read_text())
    (tmp_path / "b.yaml").write_text(PATHWAY_FILE.read_text())
    with pytest.raises(PathwayDefinitionError, match="defined twice"):
        load_pathways(tmp_path)
