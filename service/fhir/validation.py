"""R4 validation from the official StructureDefinitions (no looser, no stricter).

`definitions.json` is compiled at build time from the R4 definitions (tools/build_r4_definitions.py);
this walks a resource's JSON against it and reports, each located by a FHIRPath-style expression:
JSON rules (no null, no empty strings, arrays or objects; arrays exactly where the element
repeats), unknown elements, cardinality, primitive formats (the spec's regexes) and JSON types
(a decimal sent as a string is refused), required bindings (value sets that are a finite list of
codes), reference target types, and the error-level invariants (FHIRPath, with fhirpathpy).

The definitions are compiled once more, lazily, into a `_Shape` per (type, element path): a dict
from every JSON property name allowed there to what the walk needs about it (cardinality, type,
binding, reference targets), the required elements, and the invariants with what lets one be
skipped; the walk itself is then dict lookups. The invariants that fire on nearly every input
(ref-1, qty-3, obs-6, ...) are answered natively where that is certain (`invariants.py`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from service.fhir.invariants import Native, native
from service.fhir.issues import Issue

_DEFINITIONS = Path(__file__).with_name("r4") / "definitions.json"
_NUMBER = {"decimal", "integer", "unsignedInt", "positiveInt"}
_SYSTEM = {"http://hl7.org/fhirpath/System.String": "string"}


_BASE64_REGEX = "^(?:(\\s*([0-9a-zA-Z\\+/=]){4}\\s*)+)$"
_BASE64_RUN = re.compile(r"[0-9a-zA-Z+/=]+", re.ASCII)
_BASE64_TEXT = re.compile(r"[0-9a-zA-Z+/=\s]*", re.ASCII)


def _base64(text: str) -> bool:
    """The spec's base64Binary regex, `(\\s*([0-9a-zA-Z\\+/=]){4}\\s*)+`, without its backtracking (its
    nested, overlapping whitespace makes it exponential: 16 groups and a wrong last character took
    13 s): only base64 characters and whitespace, and each run of base64 characters some groups of 4."""
    runs = _BASE64_RUN.findall(text)
    return bool(runs) and _BASE64_TEXT.fullmatch(text) is not None and all(len(run) % 4 == 0 for run in runs)


class _Definitions:
    def __init__(self, data: dict[str, Any]) -> None:
        self.types: dict[str, dict[str, Any]] = data["types"]
        self.resources = set(data["resources"])
        self.value_sets = {k: frozenset(v) for k, v in data["valueSets"].items()}
        self.invariants: dict[str, list[str]] = data["invariants"]
        self.primitives = {k: re.compile(f"^(?:{v})$", re.ASCII) if v else None for k, v in data["primitives"].items()}
        # whether a JSON value's text has the type's format: the spec's regex, but for base64Binary
        self.formats: dict[str, Callable[[str], object] | None] = {
            k: (v.match if k != "base64Binary" or v.pattern != _BASE64_REGEX else _base64) if v else None
            for k, v in self.primitives.items()}
        self._children: dict[tuple[str, str], dict[str, tuple[str, dict[str, Any]]]] = {}
        self._shapes: dict[tuple[str, str], _Shape] = {}
        self.element_shape = self.shape("Element", "Element")  # what a primitive's `_name` holds

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

    def shape(self, type_name: str, path: str) -> _Shape:
        """The compiled form of element `path` of `type_name` (built on first use)."""
        found = self._shapes.get((type_name, path))
        if found is None:
            found = self._shapes[(type_name, path)] = _Shape(self, type_name, path)
        return found


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


_PRIMITIVE, _RESOURCE, _COMPLEX, _OTHER = range(4)


class _Invariant:
    """One error-level invariant of an element, ready to evaluate."""

    __slots__ = ("check", "key", "message", "native", "skip_unless")

    def __init__(self, key: str, path: str, check: Callable[..., list[Any]], d: _Definitions) -> None:
        self.key = key
        self.check = check
        self.message = f"{key}: {d.invariants[key][1]}"
        self.native: Native | None = native(key, d.invariants[key][0])
        names = _names(key)
        # An invariant that holds on an empty node holds on one lacking every element it names: it
        # is skipped unless the node has one of them (evaluating FHIRPath is costly).
        self.skip_unless = names if names is not None and _true_when_empty(key, path) else None


class _Child:
    """What the walk needs about one JSON property name (`status`, `_status`, `valueQuantity`)."""

    __slots__ = ("base_name", "binding", "code_values", "coded", "choice", "element_path", "kind", "max_text",
                 "maximum", "minimum", "name", "owner", "path", "format", "repeats", "targets", "type_code",
                 "underscore", "_shape")

    def __init__(self, d: _Definitions, type_name: str, name: str, base_name: str, element_path: str,
                 definition: dict[str, Any]) -> None:
        self.name = name
        self.base_name = base_name
        self.element_path = element_path
        self.underscore = name.startswith("_")
        self.choice = element_path.endswith("[x]")
        self.repeats = definition.get("max", "1") != "1"
        self.max_text = definition.get("max")
        maximum = definition.get("max", "*")
        self.maximum = None if maximum == "*" else int(maximum)
        self.minimum = definition.get("min", 0)
        type_code = _type_of(base_name, element_path, definition)
        if element_path == f"{type_name}.id" and type_name in d.resources:
            type_code = "id"  # R4 types Resource.id as System.String; the spec requires the id format
        self.type_code = type_code
        # the format of a type whose JSON is a string (the numbers, boolean and xhtml go by `primitive`)
        self.format = d.formats.get(type_code) if type_code not in _NUMBER and type_code != "boolean" else None
        self.binding: str | None = definition.get("binding")
        self.code_values = d.value_sets[self.binding] if self.binding and type_code == "code" else None
        self.coded = self.binding if self.binding and type_code in ("Coding", "CodeableConcept") else None
        self.targets = next((t for code, t in definition.get("types", []) if code == "Reference"), []) \
            if type_code == "Reference" else None
        self.owner = self.path = ""
        self._shape: _Shape | None = None
        if type_code in d.primitives or type_code == "xhtml":
            self.kind = _PRIMITIVE
        elif type_code == "Resource":
            self.kind = _RESOURCE
        elif type_code in ("BackboneElement", "Element") or definition.get("ref"):
            self.kind = _COMPLEX
            self.path = definition.get("ref") or element_path
            self.owner = type_name if self.path.split(".")[0] == type_name else self.path.split(".")[0]
        elif type_code in d.types:
            self.kind = _COMPLEX
            self.owner = self.path = type_code
        else:
            self.kind = _OTHER

    def shape(self, d: _Definitions) -> _Shape:
        if self._shape is None:
            self._shape = d.shape(self.owner, self.path)
        return self._shape


def _type_of(name: str, element_path: str, definition: dict[str, Any]) -> str:
    types = definition.get("types") or []
    if element_path.endswith("[x]"):
        prefix = element_path.rsplit(".", 1)[1][:-3]
        suffix = name[len(prefix):]
        return next(code for code, _ in types if code[0].upper() + code[1:] == suffix)
    if not types:
        return "BackboneElement"  # a contentReference
    return str(_SYSTEM.get(types[0][0], types[0][0]))


class _Shape:
    """Element `path` of `type_name`, compiled: its properties, what is required, its invariants."""

    __slots__ = ("children", "element_names", "invariants", "path", "required", "required_choices",
                 "skips_resource_type", "type_name")

    def __init__(self, d: _Definitions, type_name: str, path: str) -> None:
        self.type_name = type_name
        self.path = path
        self.skips_resource_type = path == type_name and type_name in d.resources
        children = d.children(type_name, path)
        self.children: dict[str, _Child] = {}
        self.element_names: dict[str, str] = {}
        for name, (element_path, definition) in children.items():
            for json_name in (name, "_" + name):
                self.children[json_name] = _Child(d, type_name, json_name, name, element_path, definition)
                self.element_names[json_name] = _element_name(json_name)
        self.element_names["resourceType"] = _element_name("resourceType")
        self.required = [(name, f"{name} is required (min {definition['min']})")
                         for name, (element_path, definition) in children.items()
                         if definition.get("min", 0) > 0 and not element_path.endswith("[x]")]
        choices = {element_path for element_path, definition in children.values()
                   if element_path.endswith("[x]") and definition.get("min", 0) > 0}
        self.required_choices = [(choice, frozenset(n for n, (p, _) in children.items() if p == choice),
                                  choice.rsplit(".", 1)[1]) for choice in choices]
        self.invariants: list[_Invariant] = []
        for key in d.types[type_name].get(path, {}).get("invariants", ()):
            check = _compiled(key)
            if check is not None:  # an expression fhirpathpy cannot parse is not enforced
                self.invariants.append(_Invariant(key, path, check, d))


class _Walker:
    def __init__(self, d: _Definitions, root: dict[str, Any]) -> None:
        self.d = d
        self.root = root
        self.issues: list[Issue] = []
        self.element_shape = d.element_shape

    def add(self, where: str, message: str, code: str = "structure") -> None:
        self.issues.append(Issue(where, message, code))

    def resource(self, node: dict[str, Any], kind: str, where: str) -> None:
        if kind not in self.d.resources:
            self.add(f"{where}.resourceType", f"unknown resourceType {kind!r}", "not-supported")
            return
        self.complex(node, self.d.shape(kind, kind), where, resource_root=node)

    def complex(self, node: Any, shape: _Shape, where: str, resource_root: dict[str, Any]) -> None:
        if not isinstance(node, dict):
            self.add(where, f"expected a JSON object ({shape.type_name})")
            return
        if not node:
            self.add(where, "an element may not be empty (ele-1)", "required")
            return
        children = shape.children
        seen_choice: dict[str, str] = {}
        for name, value in node.items():
            child = children.get(name)
            if child is None:
                if name != "resourceType" or not shape.skips_resource_type:
                    self.add(f"{where}.{name}", f"unknown element {name!r} in {shape.path}")
                continue
            if child.choice:
                other = seen_choice.setdefault(child.element_path, child.base_name)
                if other != child.base_name:
                    self.add(f"{where}.{name}", f"only one of {child.element_path} may be given (also {other})")
                    continue
            self.element(value, child, f"{where}.{name}", resource_root)
        for name, message in shape.required:
            if name not in node and "_" + name not in node:
                self.add(f"{where}.{name}", message, "required")
        for choice, names, at in shape.required_choices:
            if names.isdisjoint(node):
                self.add(f"{where}.{at}", f"{choice} is required", "required")
        if shape.invariants:
            self.invariants(node, shape, where, resource_root)

    def element(self, value: Any, child: _Child, where: str, resource_root: dict[str, Any]) -> None:
        name = child.name
        if value is None:
            self.add(where, f"{name} is null; leave the element out instead", "structure")
            return
        if not child.repeats:
            if isinstance(value, list):
                self.add(where, f"{name} has at most one value (max 1): not an array")
            elif child.underscore:
                self.complex(value, self.element_shape, where, resource_root)
            else:
                self.value(value, child, where, resource_root)
            return
        if not isinstance(value, list):
            self.add(where, f"{name} repeats (max {child.max_text}): it must be an array")
            return
        if not value:
            self.add(where, f"{name} is an empty array; leave the element out instead", "required")
            return
        if child.maximum is not None and len(value) > child.maximum:
            self.add(where, f"{name} has {len(value)} items; at most {child.max_text} allowed")
        if child.minimum > len(value):
            self.add(where, f"{name} needs at least {child.minimum} items", "required")
        for i, item in enumerate(value):
            if child.underscore:
                if item is not None:  # a null placeholder in a primitive's extension array (R4 JSON)
                    self.complex(item, self.element_shape, f"{where}[{i}]", resource_root)
            else:
                self.value(item, child, f"{where}[{i}]", resource_root)

    def value(self, item: Any, child: _Child, where: str, resource_root: dict[str, Any]) -> None:
        if item is None:
            self.add(where, "null is not a value; leave the element out instead", "structure")
            return
        kind = child.kind
        if kind == _PRIMITIVE:
            if child.format is not None and isinstance(item, str):  # a string type: what `primitive` does
                if not item.strip():
                    self.add(where, "an empty string is not a value; leave the element out instead", "value")
                elif not child.format(item):
                    self.add(where, f"{item!r} is not a valid {child.type_code}", "value")
            else:
                self.primitive(item, child.type_code, where)
            if child.code_values is not None and isinstance(item, str) and item not in child.code_values:
                self.add(where, f"{item!r} is not in the required value set {child.binding}", "code-invalid")
            return
        if kind == _RESOURCE:
            if not isinstance(item, dict) or not isinstance(item.get("resourceType"), str):
                self.add(where, "expected a resource with a resourceType")
                return
            self.resource(item, item["resourceType"], where)
            return
        if kind != _COMPLEX:
            return
        self.complex(item, child.shape(self.d), where, resource_root)
        if not isinstance(item, dict):
            return
        if child.coded is not None:
            self.coded(item, child.type_code, child.coded, where)
        if child.targets is not None:
            self.reference(item, child.targets, where)

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
        if isinstance(item, str):
            if not item.strip() and type_code != "xhtml":
                self.add(where, "an empty string is not a value; leave the element out instead", "value")
                return
            text = item
        elif isinstance(item, bool):
            text = "true" if item else "false"
        elif isinstance(item, float):
            text = str(int(item)) if item.is_integer() else repr(item) if math.isfinite(item) else json.dumps(item)
        else:
            text = str(item)  # an int: as json.dumps writes it
        valid = self.d.formats.get(type_code)
        if valid is not None and not valid(text):
            self.add(where, f"{item!r} is not a valid {type_code}", "value")

    def coded(self, item: dict[str, Any], type_code: str, binding: str, where: str) -> None:
        allowed = self.d.value_sets[binding]
        if type_code == "Coding":
            codings = [item]
        else:  # CodeableConcept
            raw = item.get("coding")  # a mistyped `coding` is reported where its type is checked
            codings = [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
            if not codings:
                return  # text only: R4 allows it when no code applies? (required: a coding SHALL be present)
        if not any(isinstance(c.get("code"), str) and c.get("code") in allowed for c in codings):
            codes = ", ".join(repr(c.get("code")) for c in codings)
            self.add(where, f"{codes} not in the required value set {binding}", "code-invalid")

    def reference(self, item: dict[str, Any], targets: list[str], where: str) -> None:
        ref = item.get("reference")
        if not isinstance(ref, str) or not targets or "Resource" in targets or ref.startswith(("#", "urn:")):
            return
        parts = ref.split("?")[0].split("/")
        kind = parts[-4] if len(parts) >= 4 and parts[-2] == "_history" else parts[-2] if len(parts) >= 2 else None
        if kind and kind in self.d.resources and kind not in targets:
            self.add(f"{where}.reference", f"{ref!r} is a {kind}; this element refers to "
                     f"{', '.join(targets)}", "value")

    def invariants(self, node: dict[str, Any], shape: _Shape, where: str, resource_root: dict[str, Any]) -> None:
        present: set[str] | None = None
        path = shape.path
        for invariant in shape.invariants:
            if invariant.skip_unless is not None:
                if present is None:
                    names = shape.element_names
                    present = {names[k] if k in names else _element_name(k) for k in node}
                if invariant.skip_unless.isdisjoint(present):
                    continue
            context = {"resource": resource_root, "rootResource": self.root}
            if invariant.native is not None:
                verdict = invariant.native(node, path, context)
                if verdict is not None:
                    if not verdict:
                        self.add(where, invariant.message, "invariant")
                    continue
            try:  # typed by its element path, so that choice elements (value[x]) resolve
                result = invariant.check(ResourceNode.create_node(node, path), context)
            except Exception:  # noqa: BLE001, S112  (fhirpathpy cannot evaluate it: not enforced)
                continue
            if result == [False]:
                self.add(where, invariant.message, "invariant")
