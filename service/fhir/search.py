"""FHIR R4 search: the parameters each type supports, matching, sorting, paging and links.

A search is parsed into a `Search` (what to match, how to page) and the parameters it did not
understand. With `Prefer: handling=strict` those are refused (400); lenient (the default) ignores
them and leaves them out of the `self` link, as R4 (http.html#search) says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from service.fhir.models import Issue
from service.fhir.time import parse_datetime

MAX_COUNT = 1000
DEFAULT_COUNT = 100
# Result parameters and formatting parameters every type takes.
_CONTROL = ("_count", "_offset", "_summary", "_sort", "_include", "_format", "_pretty", "_total")
_SORTS = ("_id", "-_id", "_lastUpdated", "-_lastUpdated")

Getter = Callable[[dict[str, Any]], list[Any]]


def _path(*names: str) -> Getter:
    """Values at a dotted path, flattening arrays on the way."""
    def get(resource: dict[str, Any]) -> list[Any]:
        values: list[Any] = [resource]
        for name in names:
            nxt: list[Any] = []
            for value in values:
                item = value.get(name) if isinstance(value, dict) else None
                nxt.extend(item if isinstance(item, list) else [] if item is None else [item])
            values = nxt
        return values
    return get


@dataclass(frozen=True)
class Param:
    kind: str  # token-code | token-concept | token-identifier | reference
    get: Getter


_SUBJECT = Param("reference", _path("subject"))
_CATEGORY = Param("token-concept", _path("category"))
_CODE = Param("token-concept", _path("code"))
_STATUS = Param("token-code", _path("status"))
_IDENTIFIER = Param("token-identifier", _path("identifier"))

# Search parameters by type, as named in the R4 specification (only those Carepath answers).
PARAMETERS: dict[str, dict[str, Param]] = {
    "Patient": {"identifier": _IDENTIFIER},
    "Observation": {"subject": _SUBJECT, "patient": _SUBJECT, "status": _STATUS, "code": _CODE,
                    "category": _CATEGORY, "identifier": _IDENTIFIER},
    "Condition": {"subject": _SUBJECT, "patient": _SUBJECT, "code": _CODE, "category": _CATEGORY,
                  "clinical-status": Param("token-concept", _path("clinicalStatus")),
                  "identifier": _IDENTIFIER},
    "Procedure": {"subject": _SUBJECT, "patient": _SUBJECT, "status": _STATUS, "code": _CODE,
                  "category": _CATEGORY, "identifier": _IDENTIFIER},
    "DiagnosticReport": {"subject": _SUBJECT, "patient": _SUBJECT, "status": _STATUS, "code": _CODE,
                         "category": _CATEGORY, "identifier": _IDENTIFIER},
    "ServiceRequest": {"subject": _SUBJECT, "patient": _SUBJECT, "status": _STATUS, "code": _CODE,
                       "category": _CATEGORY, "priority": Param("token-code", _path("priority")),
                       "intent": Param("token-code", _path("intent")), "identifier": _IDENTIFIER},
    "CarePlan": {"subject": _SUBJECT, "patient": _SUBJECT, "status": _STATUS, "category": _CATEGORY,
                 "intent": Param("token-code", _path("intent")), "identifier": _IDENTIFIER},
    "Task": {"subject": Param("reference", _path("for")), "patient": Param("reference", _path("for")),
             "status": _STATUS, "code": _CODE, "priority": Param("token-code", _path("priority")),
             "intent": Param("token-code", _path("intent")), "identifier": _IDENTIFIER},
}
# _include targets: (source type, search parameter) -> how to find the references.
INCLUDES: dict[str, Getter] = {
    "CarePlan:activity-reference": _path("activity", "reference"),
}
SEARCHABLE = frozenset(PARAMETERS)


@dataclass
class Search:
    resource_type: str
    patient_ids: set[str] | None = None  # by the indexed patient column
    ids: set[str] | None = None
    filters: list[Callable[[dict[str, Any]], bool]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    summary_count: bool = False
    sort: str = "_id"
    includes: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # what the self link repeats
    unknown: list[Issue] = field(default_factory=list)

    def matches(self, resource: dict[str, Any]) -> bool:
        return all(f(resource) for f in self.filters)

    def order(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        key: Callable[[dict[str, Any]], Any] = (
            (lambda r: (r.get("meta") or {}).get("lastUpdated", "")) if "lastUpdated" in self.sort
            else (lambda r: r.get("id", "")))
        return sorted(resources, key=key, reverse=self.sort.startswith("-"))


def parse_search(resource_type: str, query: Iterable[tuple[str, str]]) -> Search:
    """Turn query parameters into a Search; what it cannot honour goes to `unknown`."""
    search = Search(resource_type)
    supported = PARAMETERS.get(resource_type, {})
    for name, value in query:
        problem = _apply(search, supported, name, value)
        if problem is None:
            if name not in ("_format", "_pretty"):
                search.kept.append((name, value))
        else:
            search.unknown.append(Issue(name, problem, "not-supported"))
    return search


def _apply(search: Search, supported: dict[str, Param], name: str, value: str) -> str | None:
    base, _, modifier = name.partition(":")
    if name in _CONTROL:
        return _control(search, name, value)
    if base == "_id" and not modifier:
        search.ids = _intersect(search.ids, set(value.split(",")))
        return None
    if base == "_lastUpdated" and not modifier:
        test = _date_test(value)
        if test is None:
            return f"_lastUpdated {value!r} is not a date with an optional prefix (eq, ne, gt, ge, lt, le)"
        search.filters.append(lambda r: test(parse_datetime((r.get("meta") or {}).get("lastUpdated"))))
        return None
    param = supported.get(base)
    if param is None:
        return f"unknown search parameter {base!r} for {search.resource_type}"
    if param.kind == "reference":
        return _reference(search, param, base, modifier, value)
    if modifier:
        return f"modifier :{modifier} is not supported on {base}"
    if not value:
        return f"{base} needs a value"
    alternatives = value.split(",")
    test = _token_test(param.kind, alternatives)
    search.filters.append(lambda r: any(test(v) for v in param.get(r)))
    return None


def _control(search: Search, name: str, value: str) -> str | None:
    if name in ("_format", "_pretty"):
        return None
    if name in ("_count", "_offset"):
        if not (value.isascii() and value.isdigit()) or len(value) > 9:
            return f"{name} must be a non-negative whole number below 10^9"
        number = int(value)
        if name == "_count":
            search.count = min(number, MAX_COUNT)
            search.summary_count = search.summary_count or number == 0
        else:
            search.offset = number
        return None
    if name == "_summary":
        if value != "count":
            return "only _summary=count is supported"
        search.summary_count = True
        return None
    if name == "_sort":
        if value not in _SORTS:
            return f"_sort supports {', '.join(_SORTS)}"
        search.sort = value
        return None
    if name == "_include":
        if value not in INCLUDES or not value.startswith(search.resource_type + ":"):
            return f"_include supports {', '.join(INCLUDES)}"
        search.includes.append(value)
        return None
    return f"{name} is not supported"  # _total


def _reference(search: Search, param: Param, base: str, modifier: str, value: str) -> str | None:
    if modifier not in ("", "Patient"):
        return f"modifier :{modifier} is not supported on {base}"
    patients: set[str] = set()
    others: set[str] = set()
    for item in value.split(","):
        target = item.split("/_history/")[0]
        if "/Patient/" in target:
            patients.add(target.rsplit("/Patient/", 1)[1])
        elif target.startswith("Patient/"):
            patients.add(target[len("Patient/"):])
        elif "/" not in target and target:
            patients.add(target)  # a bare id: Carepath's subjects are Patients
        elif base == "subject" and not modifier and target:
            others.add(target)
        else:
            return f"{base} {item!r} is not a Patient reference"
    if others:  # a non-Patient subject (e.g. Group/x): match the reference itself
        search.filters.append(lambda r: any(
            isinstance(v, dict) and v.get("reference") in others | {f"Patient/{p}" for p in patients}
            for v in param.get(r)))
        return None
    search.patient_ids = _intersect(search.patient_ids, patients)
    return None


def _intersect(current: set[str] | None, new: set[str]) -> set[str]:
    return new if current is None else current & new


def _token_test(kind: str, alternatives: list[str]) -> Callable[[Any], bool]:
    wanted = [(a.split("|", 1) if "|" in a else [None, a]) for a in alternatives]

    def coding_matches(system: Any, code: Any) -> bool:
        return any((s is None or (s == "" and not system) or s == system) and (c == "" or c == code)
                   for s, c in wanted)

    def test(value: Any) -> bool:
        if kind == "token-code":
            return any(c == value for _, c in wanted)
        if kind == "token-identifier":
            return isinstance(value, dict) and coding_matches(value.get("system"), value.get("value"))
        return isinstance(value, dict) and any(
            isinstance(c, dict) and coding_matches(c.get("system"), c.get("code"))
            for c in value.get("coding") or [])
    return test


_PREFIXES = ("eq", "ne", "gt", "ge", "lt", "le", "sa", "eb")


def _date_test(value: str) -> Callable[[datetime | None], bool] | None:
    prefix = value[:2] if value[:2] in _PREFIXES else "eq"
    text = value[2:] if value[:2] in _PREFIXES else value
    start = parse_datetime(text)
    if start is None:
        return None
    end = _end_of(start, text)

    def test(moment: datetime | None) -> bool:
        if moment is None:
            return False
        return {"eq": start <= moment < end, "ne": not start <= moment < end, "gt": moment >= end,
                "sa": moment >= end, "ge": moment >= start, "lt": moment < start, "eb": moment < start,
                "le": moment < end}[prefix]
    return test


def _end_of(start: datetime, text: str) -> datetime:
    """The end of the period a date(Time) denotes: its year, month, day, minute or second."""
    if len(text) == 4:
        return start.replace(year=start.year + 1)
    if len(text) == 7:
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    if len(text) == 10:
        return start + timedelta(days=1)
    if len(text.split("+")[0].rstrip("Z")) == 16:
        return start + timedelta(minutes=1)
    return start + timedelta(seconds=1)


def searchset_bundle(search: Search, matched: list[dict[str, Any]], included: list[dict[str, Any]],
                     base: str, page_url: str) -> dict[str, Any]:
    """The searchset: total counts every match; entries are one page; links repeat what was honoured."""
    total = len(matched)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total}
    links = [{"relation": "self", "url": _page(page_url, search, search.offset)}]
    if not search.summary_count and search.count:
        links.append({"relation": "first", "url": _page(page_url, search, 0)})
        if search.offset > 0:
            links.append({"relation": "previous",
                          "url": _page(page_url, search, max(search.offset - search.count, 0))})
        if search.offset + search.count < total:
            links.append({"relation": "next", "url": _page(page_url, search, search.offset + search.count)})
    bundle["link"] = links
    if search.summary_count:
        return bundle
    page = matched[search.offset:search.offset + search.count]
    entries = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
               for r in page]
    entries += [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                 "search": {"mode": "include"}} for r in included]
    if entries:  # R4: no empty arrays
        bundle["entry"] = entries
    return bundle


def _page(url: str, search: Search, offset: int) -> str:
    params = [(k, v) for k, v in search.kept if k not in ("_count", "_offset")]
    if not search.summary_count or any(k == "_count" for k, _ in search.kept):
        params.append(("_count", str(search.count)))
    if offset:
        params.append(("_offset", str(offset)))
    return f"{url}?{urlencode(params)}" if params else url


def included_references(search: Search, page: list[dict[str, Any]]) -> list[str]:
    """Type/id references the page's `_include`s name (relative references only)."""
    refs: list[str] = []
    for include in search.includes:
        for resource in page:
            for value in INCLUDES[include](resource):
                ref = value.get("reference") if isinstance(value, dict) else None
                if isinstance(ref, str) and ref.count("/") == 1 and ref not in refs:
                    refs.append(ref)
    return refs


def page_of(search: Search, matched: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [] if search.summary_count else matched[search.offset:search.offset + search.count]
