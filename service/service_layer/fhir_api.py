"""The FHIR R4 interactions (create, update, delete, read, vread, history, search, batch and
transaction) over the store and the ingest service; routes translate HTTP to these and back."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from service.adapters.store import HistoryEntry, Store, Stored
from service.errors import Gone, InvalidResource, MethodNotAllowed, NotFound, PreconditionFailed
from service.fhir.bundles import Entry
from service.fhir.device import DEVICE_ID, carepath_device
from service.fhir.ids import content_id, is_fhir_id
from service.fhir.models import INPUT_TYPES, Issue, known_resource_type
from service.fhir.outcome import operation_outcome
from service.fhir.search import (
    SEARCHABLE,
    Search,
    included_references,
    page_of,
    parse_search,
    searchset_bundle,
)
from service.fhir.time import format_instant
from service.service_layer.group_commit import GroupCommit
from service.service_layer.ingest import Ingestor, Removed, Write


@dataclass
class Written:
    """The answer to one write: what is stored now (None after a delete) and the issues to report
    (warnings and information: the resource was accepted)."""

    result: Stored | Removed
    issues: list[Issue] = field(default_factory=list)

    @property
    def status(self) -> int:
        if isinstance(self.result, Removed):
            return 204
        return 201 if self.result.created else 200


class FhirApi:
    def __init__(self, ingestor: Ingestor, group: GroupCommit) -> None:
        self.ingestor = ingestor
        self.group = group  # writes and the evaluations they prompt, committed together
        self.engine = ingestor.engine

    # --- writes ------------------------------------------------------------------------------
    def parse_condition(self, resource_type: str, criteria: str | None, where: str) -> Search | None:
        """An `If-None-Exist` query (strictly parsed: an unknown parameter would match everything)."""
        if not criteria:
            return None
        search = parse_search(resource_type, parse_qsl(criteria.lstrip("?"), keep_blank_values=True))
        if search.unknown:
            raise InvalidResource(f"If-None-Exist: {search.unknown[0].message}",
                                  [Issue(where, i.message, "not-supported") for i in search.unknown], 400)
        return search

    async def create(self, resource: dict[str, Any], *, if_none_exist: str | None, actor: str) -> Written:
        """POST: the server assigns the id (a hash of the content, so a re-post is the same resource).
        A client's id is ignored (R4), but one that is not a valid FHIR id is invalid content."""
        if "id" in resource and not is_fhir_id(resource["id"]):
            where = f"{resource.get('resourceType')}.id"
            raise InvalidResource("id must match [A-Za-z0-9-.]{1,64}", [Issue(where, "not a FHIR id", "value")])
        resource = {**resource, "id": content_id(resource)}
        issues = self.ingestor.check(resource)
        condition = self.parse_condition(resource["resourceType"], if_none_exist, "If-None-Exist")
        [result] = await self.group.write([Write(resource["resourceType"], resource["id"], resource,
                                                 if_none_exist=condition, is_create=True)], actor=actor)
        return Written(result, issues)

    async def update(self, resource_type: str, resource_id: str, resource: dict[str, Any], *,
                     if_match: str | None, actor: str) -> Written:
        """PUT: update, or create with the client's id."""
        if resource.get("id") != resource_id:
            message = f"the resource's id {resource.get('id')!r} must equal the URL's id {resource_id!r}"
            raise InvalidResource(message, [Issue(f"{resource_type}.id", message, "invalid")], 400)
        issues = self.ingestor.check(resource)
        [result] = await self.group.write([Write(resource_type, resource_id, resource, if_match=if_match)],
                                          actor=actor)
        return Written(result, issues)

    async def delete(self, resource_type: str, resource_id: str, *, if_match: str | None,
                     actor: str) -> Written:
        """DELETE an input; its patient is re-evaluated (escalations it supported are kept for review)."""
        [result] = await self.group.write([Write(resource_type, resource_id, None, if_match=if_match)],
                                          actor=actor)
        return Written(result)

    # --- reads -------------------------------------------------------------------------------
    async def read(self, resource_type: str, resource_id: str) -> Stored:
        if (resource_type, resource_id) == ("Device", DEVICE_ID):
            return Stored(carepath_device(), 1, created=False, changed=False)
        async with self.engine.connect() as conn:
            store = Store(conn)
            stored = await store.get(resource_type, resource_id)
            if stored is None:
                last = await store.history(resource_type, resource_id, limit=1)
        if stored is None:
            if last[1] and last[1][0].resource is None:
                raise Gone(f"{resource_type}/{resource_id} was deleted")
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        return stored

    async def vread(self, resource_type: str, resource_id: str, version: str) -> Stored:
        if not (version.isascii() and version.isdigit()) or len(version) > 9:  # versions are small positive integers
            raise NotFound(f"{resource_type}/{resource_id}/_history/{version} is not known")
        async with self.engine.connect() as conn:
            found = await Store(conn).version(resource_type, resource_id, int(version))
        if found is None:
            raise NotFound(f"{resource_type}/{resource_id}/_history/{version} is not known")
        content, deleted = found
        if deleted or content is None:
            raise Gone(f"{resource_type}/{resource_id}/_history/{version} is a deletion")
        return Stored(content, int(version), created=False, changed=False)

    async def history(self, resource_type: str, resource_id: str | None, query: Iterable[tuple[str, str]],
                      base: str, url: str) -> dict[str, Any]:
        count, offset, kept = 100, 0, []
        for name, value in query:
            if name in ("_count", "_offset") and value.isascii() and value.isdigit() and len(value) <= 9:
                count, offset = (min(int(value), 1000), offset) if name == "_count" else (count, int(value))
                kept.append((name, value))
        async with self.engine.connect() as conn:
            total, page = await Store(conn).history(resource_type, resource_id, limit=count, offset=offset)
        if resource_id and total == 0:
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        links = [{"relation": "self", "url": _with(url, [("_count", str(count))] + (
            [("_offset", str(offset))] if offset else []))}]
        if offset + count < total:
            links.append({"relation": "next", "url": _with(url, [("_count", str(count)),
                                                                 ("_offset", str(offset + count))])})
        if offset:
            links.append({"relation": "previous", "url": _with(url, [("_count", str(count)),
                                                                     ("_offset", str(max(offset - count, 0)))])})
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "total": total, "link": links}
        if page:
            bundle["entry"] = [_history_entry(h, base) for h in page]
        return bundle

    async def search(self, resource_type: str, query: list[tuple[str, str]], *, strict: bool,
                     base: str, url: str) -> dict[str, Any]:
        if resource_type not in SEARCHABLE:
            raise NotFound(f"{resource_type} is not searchable here")
        search = parse_search(resource_type, query)
        if strict and search.unknown:
            raise InvalidResource(search.unknown[0].message, search.unknown, 400)
        async with self.engine.connect() as conn:
            store = Store(conn)
            candidates = await store.select(resource_type, patient_ids=search.patient_ids, ids=search.ids)
            matched = search.order([r for r in candidates if search.matches(r)])
            included = await store.get_many(included_references(search, page_of(search, matched)))
        return searchset_bundle(search, matched, included, base, url)

    # --- batch and transaction ---------------------------------------------------------------
    async def _batch_at_once(self, writes: list[tuple[int, Write, list[Issue]]], actor: str
                             ) -> list[Stored | Removed] | None:
        """A batch's entries in one commit when none can fail on its own (no DELETE, If-Match or
        If-None-Exist, nothing refused inside the write); None: answer them one by one."""
        if len(writes) < 2 or any(op.resource is None or op.if_match or op.if_none_exist
                                  for _, op, _ in writes):
            return None
        try:
            return await self.group.write([op for _, op, _ in writes], actor=actor)
        except (PreconditionFailed, InvalidResource, MethodNotAllowed):
            return None  # rolled back: each entry gets its own answer below

    async def bundle(self, kind: str, entries: list[Entry], *, actor: str, base: str) -> dict[str, Any]:
        """A transaction applies every write in one commit or none (any refusal refuses the whole);
        a batch answers each entry on its own. Entries whose type the pathway does not take are
        acknowledged with an informational issue and not stored."""
        answers: list[dict[str, Any] | None] = [None] * len(entries)
        writes: list[tuple[int, Write, list[Issue]]] = []
        errors: dict[int, list[Issue]] = {}
        for i, entry in enumerate(entries):
            where = f"Bundle.entry[{i}]"
            if entry.method == "GET":
                continue
            if entry.method == "DELETE":
                kind_id = entry.url.split("?")[0].strip("/").split("/")
                if len(kind_id) != 2 or kind_id[0] not in INPUT_TYPES:
                    errors[i] = [Issue(f"{where}.request.url", f"DELETE takes {{type}}/{{id}} of an input type, "
                                       f"not {entry.url!r}", "not-supported")]
                else:
                    writes.append((i, Write(kind_id[0], kind_id[1], None, if_match=entry.if_match), []))
                continue
            resource_type = entry.resource.get("resourceType")
            if isinstance(resource_type, str) and resource_type not in INPUT_TYPES and \
                    known_resource_type(resource_type):
                answers[i] = {"response": {"status": "200 OK", "outcome": operation_outcome(
                    "not used", [Issue(f"{where}.resource", f"{resource_type} is not used by the pathway; "
                                       "acknowledged, not stored", "informational", "information")])}}
                continue
            issues = self.ingestor.assess(entry.resource, f"{where}.resource.")
            if any(x.refuses for x in issues):
                errors[i] = [x for x in issues if x.refuses]
                continue
            try:
                condition = self.parse_condition(resource_type, entry.if_none_exist, f"{where}.request.ifNoneExist")
            except InvalidResource as exc:
                errors[i] = exc.issues
                continue
            writes.append((i, Write(resource_type, entry.resource["id"], entry.resource, entry.if_match,
                                    condition, is_create=entry.method == "POST"), issues))
        if kind == "transaction" and errors:
            found = [x for e in errors.values() for x in e]
            raise InvalidResource(f"{len(errors)} invalid entr(y/ies); nothing was stored", found)
        unevaluated: list[Stored | Removed] = []  # entries answered one by one are evaluated at the end
        if kind == "transaction":
            # R4 order: DELETE, then POST/PUT; one commit, with the evaluations
            ordered = sorted(writes, key=lambda w: w[1].resource is not None)
            done = await self.group.write([w for _, w, _ in ordered], actor=actor)
            for (i, _, issues), result in zip(ordered, done, strict=True):
                answers[i] = _write_answer(Written(result, issues))
        else:
            done = await self._batch_at_once(writes, actor)
            for (i, _, issues), result in zip(writes, done, strict=True) if done is not None else ():
                answers[i] = _write_answer(Written(result, issues))
            for i, op, issues in ([] if done is not None else writes):
                try:
                    [result] = await self.ingestor.write([op], actor=actor)
                except (PreconditionFailed, InvalidResource) as exc:
                    errors[i] = exc.issues or [Issue(f"Bundle.entry[{i}]", exc.message, "conflict")]
                    answers[i] = _error_answer(exc.status, errors[i])
                    continue
                answers[i] = _write_answer(Written(result, issues))
                unevaluated.append(result)
        await self.ingestor.evaluate_changed(unevaluated, actor=actor)
        for i, issues in errors.items():
            answers[i] = answers[i] or _error_answer(422, issues)
        for i, entry in enumerate(entries):
            if entry.method == "GET":
                answers[i] = await self._get_entry(entry.url, base)
        return {"resourceType": "Bundle",
                "type": "transaction-response" if kind == "transaction" else "batch-response",
                "entry": answers}

    async def _get_entry(self, url: str, base: str) -> dict[str, Any]:
        path, _, query = url.partition("?")
        parts = path.strip("/").split("/")
        try:
            if len(parts) == 1:
                found = await self.search(parts[0], parse_qsl(query, keep_blank_values=True), strict=False,
                                          base=base, url=f"{base}/{parts[0]}")
                return {"resource": found, "response": {"status": "200 OK"}}
            if len(parts) == 2:
                stored = await self.read(parts[0], parts[1])
            elif len(parts) == 4 and parts[2] == "_history":
                stored = await self.vread(parts[0], parts[1], parts[3])
            else:
                raise NotFound(f"GET {url} is not supported in a Bundle")
        except (NotFound, Gone, InvalidResource) as exc:
            return _error_answer(exc.status, exc.issues or [Issue("Bundle.entry.request.url", exc.message,
                                                                  exc.code)])
        return {"resource": stored.resource, "response": {"status": "200 OK", "etag": stored.etag,
                                                          "location": stored.location}}


def _write_answer(written: Written) -> dict[str, Any]:
    result = written.result
    if isinstance(result, Removed):
        return {"response": {"status": "204 No Content"}}
    response: dict[str, Any] = {"status": "201 Created" if result.created else "200 OK",
                                "location": result.location, "etag": result.etag,
                                "lastModified": result.resource["meta"]["lastUpdated"]}
    if written.issues:
        response["outcome"] = operation_outcome("accepted with warnings", written.issues, severity="warning")
    return {"response": response}


def _error_answer(status: int, issues: list[Issue]) -> dict[str, Any]:
    phrase = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
              410: "Gone", 412: "Precondition Failed", 422: "Unprocessable Entity"}.get(status, "Error")
    return {"response": {"status": f"{status} {phrase}", "outcome": operation_outcome("refused", issues)}}


def _history_entry(entry: HistoryEntry, base: str) -> dict[str, Any]:
    url = f"{base}/{entry.resource_type}/{entry.id}"
    item: dict[str, Any] = {"fullUrl": url}
    if entry.resource is not None:
        item["resource"] = entry.resource
    item["request"] = {"method": entry.method,
                       "url": entry.resource_type if entry.method == "POST" else f"{entry.resource_type}/{entry.id}"}
    item["response"] = {"status": {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[entry.method],
                        "etag": f'W/"{entry.version_id}"', "lastModified": format_instant(entry.last_updated)}
    return item


def _with(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url
