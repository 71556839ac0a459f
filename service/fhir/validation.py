"""R4 validation from the official StructureDefinitions (no looser, no stricter).

`definitions.json` is compiled at build time from the R4 definitions (tools/build_r4_definitions.py);
this walks a resource's JSON against it and reports, each located by a FHIRPath-style expression:
JSON rules (no null, no empty strings, arrays or objects; arrays exactly where the element
repeats), unknown elements, cardinality, primitive formats (the spec's regexes) and JSON types
(a decimal sent as a string is refused), required bindings (value sets that are a finite list of
codes), reference target types, and the error-level invariants (FHIRPath, with fhirpathpy).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from service.fhir.issues import Issue

_DEFINITIONS = Path(__file__).with_name("r4") / "definitions.json"
_NUMBER = {"decimal", "integer", "unsignedInt", "positiveInt"}
_SYSTEM = {"http://hl7.org/fhirpath/System.String": "string"}


class _Definitions:
    def __init__(self, data: dict[str, Any]) -> None:
        self.types: dict[str, dict[str, Any]] = data["types"]
        self.resources = set(data["resources"])
        self.value_sets = {k: frozenset(v) for k, v in data["valueSets"].items()}
        self.invariants: dict[str, list[str]] = data["invariants"]
        self.primitives = {k: re.compile(f"^(?:{v})$", re.ASCII) if v else None for k, v in data["primitives"].items()}
        self._children: dict[tuple[str, str], dict[str, tuple[str, dict[str, Any]]]] = {}

    def children(self, type_name: str, path: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """Property name -> (element path, definition); choice elements under each typed name."""
        key = (type_name, path)
        if key not in self._children:
            found: dict[str, tuple[str, dict[str, Any]]] = {}
            prefix = path + "."
            for element_path, element in self.types[type_name].items():
                if element_path.startswith(prefix) and "." not in element_path[len(prefix):]:
                    name = element_path[len(prefix):]
                    if name.endswith("[x]"):
                        for code, _ in element.get("types", []):
                            found[name[:-3] + code[0].upper() + code[1:]] = (element_path, element)
                    else:
                        found[name] = (element_path, element)
            self._children[key] = found
        return self._children[key]


@cache
def definitions() -> _Definitions:
    return _Definitions(json.loads(_DEFINITIONS.read_text()))


def _quiet(*_: Any) -> None:
    """FHIRPath trace() output is not printed (dom-3 traces)."""


def _has_value(inputs: list[Any]) -> bool:
    """FHIRPath hasValue() (fhirpathpy lacks it): a single primitive with a value."""
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], dict | list)


_OPTIONS = {"traceFn": _quiet, "userInvocationTable": {"hasValue": {"fn": _has_value, "arity": {0: []}}}}


@cache
def _compiled(key: str) -> Callable[..., list[Any]] | None:
    try:
        return fhirpathpy.compile(definitions().invariants[key][0],  # type: ignore[no-any-return]
                                  models["r4"], _OPTIONS)
    except Exception:  # noqa: BLE001  (an expression fhirpathpy cannot parse is not enforced)
        return None


def validate_r4(resource: dict[str, Any], where: str = "") -> list[Issue]:
    """Every R4 error in one resource (at most 20), located from `where` (e.g. `Bundle.entry[0].resource.`)."""
    kind = resource.get("resourceType")
    d = definitions()
    if not isinstance(kind, str) or kind not in d.resources:
        return [Issue(f"{where}resourceType", f"unknown resourceType {kind!r}", "not-supported")]
    walker = _Walker(d, resource)
    try:
        walker.resource(resource, kind, where.rstrip(".") if where else kind)
    except RecursionError:
        return [Issue(where.rstrip(".") or kind, "the resource is nested too deeply to validate", "too-costly")]
    return walker.issues[:20]


_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WHOLE_NODE = ("children()", "descendants()", "%", "$this")


def _element_name(json_name: str) -> str:
    """valueQuantity -> value, _birthDate -> birthDate: the name FHIRPath navigates by."""
    name = json_name.lstrip("_")
    head = re.match(r"[a-z][a-z0-9]*", name)
    return head.group(0) if head else name


@cache
def _names(key: str) -> frozenset[str] | None:
    """The element names an invariant can look at; None when it looks at the whole node."""
    expression = definitions().invariants[key][0]
    if expression.startswith("contained."):
        return frozenset({"contained"})  # dom-2..dom-5: about contained resources only
    if any(marker in expression for marker in _WHOLE_NODE):
        return None
    return frozenset(_TOKEN.findall(expression))


@cache
def _true_when_empty(key: str, path: str) -> bool:
    check = _compiled(key)
    try:
        return check is not None and check(ResourceNode.create_node({}, path), {}) == [True]
    except Exception:  # noqa: BLE001
        return False


def _vacuous(key: str, path: str, present: set[str]) -> bool:
    """An invariant that holds on an empty node holds on one lacking every element it names (a
    shortcut: evaluating FHIRPath is most of the cost of validation)."""
    names = _names(key)
    return names is not None and not (names & present) and _true_when_empty(key, path)


class _Walker:
    def __init__(self, d: _Definitions, root: dict[str, Any]) -> None:
        self.d = d
        self.root = root
        self.issues: list[Issue] = []

    def add(self, where: str, message: str, code: str = "structure") -> None:
        self.issues.append(Issue(where, message, code))

    def resource(self, node: dict[str, Any], kind: str, where: str) -> None:
        if kind not in self.d.resources:
            self.add(f"{where}.resourceType", f"unknown resourceType {kind!r}", "not-supported")
            return
        self.complex(node, kind, kind, where, resource_root=node)

    def complex(self, node: Any, type_name: str, path: str, where: str, resource_root: dict[str, Any]) -> None:
        if not isinstance(node, dict):
            self.add(where, f"expected a JSON object ({type_name})")
            return
        if not node:
            self.add(where, "an element may not be empty (ele-1)", "required")
            return
        children = self.d.children(type_name, path)
        element = self.d.types[type_name].get(path, {})
        seen_choice: dict[str, str] = {}
        for name, value in node.items():
            if name == "resourceType" and path == type_name and type_name in self.d.resources:
                continue
            base_name = name[1:] if name.startswith("_") else name
            if base_name not in children:
                self.add(f"{where}.{name}", f"unknown element {name!r} in {path}")
                continue
            element_path, definition = children[base_name]
            if element_path.endswith("[x]"):
                other = seen_choice.setdefault(element_path, base_name)
                if other != base_name:
                    self.add(f"{where}.{name}", f"only one of {element_path} may be given (also {other})")
                    continue
            self.element(value, name, base_name, element_path, definition, type_name, f"{where}.{name}",
                         resource_root)
        for name, (element_path, definition) in children.items():
            if definition.get("min", 0) > 0 and not element_path.endswith("[x]") and name not in node \
                    and f"_{name}" not in node:
                self.add(f"{where}.{name}", f"{name} is required (min {definition['min']})", "required")
        if element_path_has_required_choice := [p for p, (ep, dfn) in children.items()
                                                if ep.endswith("[x]") and dfn.get("min", 0) > 0]:
            paths = {children[p][0] for p in element_path_has_required_choice}
            for choice in paths:
                if not any(children[n][0] == choice for n in node if n in children):
                    self.add(f"{where}.{choice.rsplit('.', 1)[1]}", f"{choice} is required", "required")
        self.invariants(node, element, path, where, resource_root)

    def element(self, value: Any, name: str, base_name: str, element_path: str, definition: dict[str, Any],
                type_name: str, where: str, resource_root: dict[str, Any]) -> None:
        repeats = definition.get("max", "1") != "1"
        if value is None:
            self.add(where, f"{name} is null; leave the element out instead", "structure")
            return
        items: list[Any]
        if repeats:
            if not isinstance(value, list):
                self.add(where, f"{name} repeats (max {definition.get('max')}): it must be an array")
                return
            if not value:
                self.add(where, f"{name} is an empty array; leave the element out instead", "required")
                return
            maximum = definition.get("max", "*")
            if maximum != "*" and len(value) > int(maximum):
                self.add(where, f"{name} has {len(value)} items; at most {maximum} allowed")
            items = value
        else:
            if isinstance(value, list):
                self.add(where, f"{name} has at most one value (max 1): not an array")
                return
            items = [value]
        minimum = definition.get("min", 0)
        if repeats and minimum > len(items):
            self.add(where, f"{name} needs at least {minimum} items", "required")
        type_code = self.type_of(base_name, element_path, definition)
        if element_path == f"{type_name}.id" and type_name in self.d.resources:
            type_code = "id"  # R4 types Resource.id as System.String; the spec requires the id format
        for i, item in enumerate(items):
            at = f"{where}[{i}]" if repeats else where
            if item is None and name.startswith("_"):
                continue  # a null placeholder in a primitive's extension array (R4 JSON)
            if name.startswith("_"):
                self.complex(item, "Element", "Element", at, resource_root)
                continue
            self.value(item, type_code, element_path, definition, type_name, at, resource_root)

    def type_of(self, name: str, element_path: str, definition: dict[str, Any]) -> str:
        types = definition.get("types") or []
        if element_path.endswith("[x]"):
            prefix = element_path.rsplit(".", 1)[1][:-3]
            suffix = name[len(prefix):]
            return next(code for code, _ in types if code[0].upper() + code[1:] == suffix)
        if not types:
            return "BackboneElement"  # a contentReference
        return _SYSTEM.get(types[0][0], types[0][0])

    def value(self, item: Any, type_code: str, element_path: str, definition: dict[str, Any], type_name: str,
              where: str, resource_root: dict[str, Any]) -> None:
        if item is None:
            self.add(where, "null is not a value; leave the element out instead", "structure")
            return
        if type_code in self.d.primitives or type_code == "xhtml":
            self.primitive(item, type_code, where)
            binding = definition.get("binding")
            if binding and type_code == "code" and isinstance(item, str) and \
                    item not in self.d.value_sets[binding]:
                self.add(where, f"{item!r} is not in the required value set {binding}", "code-invalid")
            return
        if type_code == "Resource":
            if not isinstance(item, dict) or not isinstance(item.get("resourceType"), str):
                self.add(where, "expected a resource with a resourceType")
                return
            self.resource(item, item["resourceType"], where)
            return
        if type_code in ("BackboneElement", "Element") or definition.get("ref"):
            path = definition.get("ref") or element_path
            owner = type_name if path.split(".")[0] == type_name else path.split(".")[0]
            self.complex(item, owner, path, where, resource_root)
        elif type_code in self.d.types:
            self.complex(item, type_code, type_code, where, resource_root)
        else:
            return
        binding = definition.get("binding")
        if binding and isinstance(item, dict):
            self.coded(item, type_code, binding, where)
        if type_code == "Reference" and isinstance(item, dict):
            self.reference(item, definition, where)

    def primitive(self, item: Any, type_code: str, where: str) -> None:
        if type_code == "boolean":
            ok = isinstance(item, bool)
        elif type_code in _NUMBER:
            ok = isinstance(item, int | float) and not isinstance(item, bool)
            if ok and type_code != "decimal" and not float(item).is_integer():
                self.add(where, f"{item!r} is not a whole number ({type_code})", "value")
                return
        else:
            ok = isinstance(item, str)
        if not ok:
            expected = "a number" if type_code in _NUMBER else "true/false" if type_code == "boolean" \
                else "a string"
            self.add(where, f"{item!r} is not a valid JSON {type_code} (R4 JSON: {expected})", "value")
            return
        if isinstance(item, str) and not item.strip() and type_code != "xhtml":
            self.add(where, "an empty string is not a value; leave the element out instead", "value")
            return
        pattern = self.d.primitives.get(type_code)
        text = json.dumps(item) if type_code in _NUMBER or type_code == "boolean" else str(item)
        if type_code in _NUMBER and isinstance(item, float) and item.is_integer():
            text = str(int(item))
        if pattern is not None and not pattern.match(text):
            self.add(where, f"{item!r} is not a valid {type_code}", "value")

    def coded(self, item: dict[str, Any], type_code: str, binding: str, where: str) -> None:
        allowed = self.d.value_sets[binding]
        if type_code == "Coding":
            codings = [item]
        elif type_code == "CodeableConcept":
            raw = item.get("coding")  # a mistyped `coding` is reported where its type is checked
            codings = [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
            if not codings:
                return  # text only: R4 allows it when no code applies? (required: a coding SHALL be present)
        else:
            return
        if not any(isinstance(c.get("code"), str) and c.get("code") in allowed for c in codings):
            codes = ", ".join(repr(c.get("code")) for c in codings)
            self.add(where, f"{codes} not in the required value set {binding}", "code-invalid")

    def reference(self, item: dict[str, Any], definition: dict[str, Any], where: str) -> None:
        ref = item.get("reference")
        targets = next((t for code, t in definition.get("types", []) if code == "Reference"), [])
        if not isinstance(ref, str) or not targets or "Resource" in targets or ref.startswith(("#", "urn:")):
            return
        parts = ref.split("?")[0].split("/")
        kind = parts[-4] if len(parts) >= 4 and parts[-2] == "_history" else parts[-2] if len(parts) >= 2 else None
        if kind and kind in self.d.resources and kind not in targets:
            self.add(f"{where}.reference", f"{ref!r} is a {kind}; this element refers to "
                     f"{', '.join(targets)}", "value")

    def invariants(self, node: dict[str, Any], element: dict[str, Any], path: str, where: str,
                   resource_root: dict[str, Any]) -> None:
        present = {_element_name(k) for k in node}
        for key in element.get("invariants", ()):
            check = _compiled(key)
            if check is None or _vacuous(key, path, present):
                continue
            try:  # typed by its element path, so that choice elements (value[x]) resolve
                result = check(ResourceNode.create_node(node, path),
                               {"resource": resource_root, "rootResource": self.root})
            except Exception:  # noqa: BLE001, S112  (fhirpathpy cannot evaluate it: not enforced)
                continue
            if result == [False]:
                self.add(where, f"{key}: {self.d.invariants[key][1]}", "invariant")
