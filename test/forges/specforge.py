"""A fake forge that answers from a published API description and checks every request against it.

:class:`SpecForge` is a small aiohttp server on a free loopback port. It knows the operations of a description
(the pruned copies in ``test/fixtures/forges/``, see ``extract.py`` there): for each request it finds the operation
by method and path template, checks the path, query and JSON body against the description's parameters and
request schema with jsonschema, lets the test's handler answer, and checks that answer against the description's
response schema for its status before sending it. Every mismatch is recorded in :attr:`SpecForge.problems`, and
leaving ``async with SpecForge(...)`` with problems fails the test — so a test passes only if the adapter spoke
the API as GitHub/GitLab describe it, and the answers it understood are answers those forges describe.

Two conversions make the descriptions' schemas JSON Schema (draft 4): OpenAPI 3.0's ``nullable: true`` becomes a
``null`` alternative, and the named :data:`GITLAB_CORRECTIONS` replace GitLab property types that its generated
description gets wrong (see that table). Operations a description lacks are added with
:meth:`Description.add_unverified` and are marked so in :attr:`Call.verified`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
from aiohttp import web

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "forges"

_SKIP = frozenset({"example", "examples", "description", "externalDocs", "x-github", "x-octokit", "summary"})
"""Keys that hold documentation or sample data, not schemas (unless they name a property)."""
_NAMED = frozenset({"properties", "definitions", "schemas", "patternProperties"})


def _to_json_schema(node: Any, names: bool = False) -> Any:
    """OpenAPI 3.0 / Swagger 2.0 schema objects → JSON Schema draft 4 (``nullable``/``x-nullable`` → ``null``).
    ``names``: ``node`` maps names to schemas (``properties``, ``definitions``), so no key of it is skipped."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    if names:
        return {key: _to_json_schema(value) for key, value in node.items()}
    converted = {key: value if key in _SKIP else _to_json_schema(value, key in _NAMED) for key, value in node.items()}
    nullable = converted.pop("nullable", None) is True
    nullable = converted.pop("x-nullable", None) is True or nullable
    if not nullable:
        return converted
    if "type" in converted and "$ref" not in converted:
        kind = converted["type"]
        converted["type"] = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
        if "enum" in converted and None not in converted["enum"]:
            converted["enum"] = [*converted["enum"], None]
        return converted
    return {"anyOf": [converted, {"type": "null"}]}


@dataclass
class Operation:
    name: str
    method: str
    template: str
    parameters: list[dict[str, Any]]
    body_schema: dict[str, Any] | None
    body_required: bool
    responses: dict[str, dict[str, Any] | None]
    """Status (``"200"``, ``"default"``) → the JSON schema of its body, or ``None`` when it is described without."""
    verified: bool = True
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        self.pattern = re.compile(f"^{regex}$")


class Description:
    """A (pruned) published API description, its operations indexed by ``operationId``."""

    def __init__(self, document: dict[str, Any], source: str) -> None:
        for ref in document.get("x-missing-refs", []):
            # a definition the excerpt did not copy (extract.py lists them): checked as "anything"
            document.setdefault("definitions", {}).setdefault(ref.rsplit("/", 1)[1], {})
        self.raw = document
        self.source = source
        self.swagger = "swagger" in document
        self.document = _to_json_schema(document)
        self.operations: dict[str, Operation] = {}
        for template, item in self.document["paths"].items():
            shared = item.get("parameters", [])
            for method, operation in item.items():
                if method == "parameters":
                    continue
                self.operations[operation["operationId"]] = self._operation(template, method, operation, shared)

    # -- reading the description -----------------------------------------------------------------------------------

    def resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            target: Any = self.document
            for part in node["$ref"][2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def validator(self, schema: Mapping[str, Any]) -> jsonschema.Draft4Validator:
        root = {
            "definitions": self.document.get("definitions", {}),
            "components": self.document.get("components", {}),
            **schema,
        }
        return jsonschema.Draft4Validator(root)

    def example(self, name: str) -> Any:
        """An example of ``components/examples`` (OpenAPI 3), deep-copied."""
        return copy.deepcopy(self.raw["components"]["examples"][name]["value"])

    def _operation(self, template: str, method: str, raw: dict[str, Any], shared: list[Any]) -> Operation:
        parameters = [self.resolve(p) for p in [*shared, *raw.get("parameters", [])]]
        body_schema: dict[str, Any] | None = None
        body_required = False
        if self.swagger:
            for parameter in parameters:
                if parameter.get("in") == "body":
                    body_schema, body_required = parameter["schema"], bool(parameter.get("required"))
            parameters = [p for p in parameters if p.get("in") != "body"]
        elif "requestBody" in raw:
            request = self.resolve(raw["requestBody"])
            body_schema = request["content"]["application/json"]["schema"]
            body_required = bool(request.get("required"))
        responses: dict[str, dict[str, Any] | None] = {}
        for status, response in raw.get("responses", {}).items():
            response = self.resolve(response)
            if self.swagger:
                responses[str(status)] = response.get("schema")
            else:
                content = response.get("content", {}).get("application/json")
                responses[str(status)] = content.get("schema") if content else None
        return Operation(
            raw["operationId"], method.upper(), template, parameters, body_schema, body_required, responses
        )

    def add_unverified(
        self,
        name: str,
        method: str,
        template: str,
        parameters: list[dict[str, Any]],
        body_schema: dict[str, Any] | None,
        responses: dict[str, dict[str, Any] | None],
    ) -> None:
        """An operation the description lacks, written by hand (its calls are marked ``verified=False``)."""
        self.operations[name] = Operation(
            name, method.upper(), template, parameters, body_schema, body_schema is not None, responses, verified=False
        )


def load_github() -> Description:
    path = FIXTURES / "github" / "api.github.com.pulls.json"
    return Description(json.loads(path.read_text(encoding="utf-8")), str(path))


GITLAB_CORRECTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "labels": (
        {"type": "array", "items": {"type": "string"}},
        "described as a string; GitLab returns a JSON array of label names (as the request bodies and the "
        "Merge Request Hook example carry them)",
    ),
    "draft": ({"type": "boolean"}, "described as a string; GitLab returns a boolean"),
    "squash": ({"type": "boolean"}, "described as a string; GitLab returns a boolean"),
    "has_conflicts": ({"type": "boolean"}, "described as a string; GitLab returns a boolean"),
    "source_project_id": ({"type": "integer"}, "described as a string; GitLab returns the project's numeric id"),
    "target_project_id": ({"type": "integer"}, "described as a string; GitLab returns the project's numeric id"),
    "merged_by": (
        {"anyOf": [{"$ref": "#/definitions/API_Entities_UserBasic"}, {"type": "null"}]},
        "null until the merge request is merged (Swagger 2.0 cannot say so)",
    ),
    "merge_user": (
        {"anyOf": [{"$ref": "#/definitions/API_Entities_UserBasic"}, {"type": "null"}]},
        "null until someone merges or sets auto-merge",
    ),
    "closed_by": (
        {"anyOf": [{"$ref": "#/definitions/API_Entities_UserBasic"}, {"type": "null"}]},
        "null unless the merge request was closed",
    ),
    "merged_at": ({"type": ["string", "null"]}, "null until merged"),
    "closed_at": ({"type": ["string", "null"]}, "null unless closed"),
    "merge_commit_sha": ({"type": ["string", "null"]}, "null unless merged with a merge commit"),
    "squash_commit_sha": ({"type": ["string", "null"]}, "null unless merged with squash"),
}
"""Property types of ``API_Entities_MergeRequest`` that GitLab's generated Swagger description gets wrong (grape
entities document most exposures as strings), replaced by what GitLab's API returns; each with the reason."""


def load_gitlab() -> Description:
    path = FIXTURES / "gitlab" / "openapi_v2.merge_requests.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    definitions = document["definitions"]
    properties = definitions["API_Entities_MergeRequest"]["properties"]
    for name, (schema, _reason) in GITLAB_CORRECTIONS.items():
        properties[name] = schema
    # The list answers API_Entities_MergeRequestBasic, which the excerpt does not copy; API_Entities_MergeRequest
    # is GitLab's extension of it (more exposures, none changed), so a Basic item is checked against its properties.
    definitions["API_Entities_MergeRequestBasic"] = definitions["API_Entities_MergeRequest"]
    description = Description(document, str(path))
    # Not in the copied description (see gitlab/README.md): written from GitLab's API documentation.
    description.add_unverified(
        "getApiV4Users",
        "get",
        "/api/v4/users",
        [{"in": "query", "name": "username", "type": "string", "required": False}],
        None,
        {"200": {"type": "array", "items": {"$ref": "#/definitions/API_Entities_UserBasic"}}},
    )
    description.add_unverified(
        "postApiV4ProjectsIdMergeRequestsNoteableIdNotes",
        "post",
        "/api/v4/projects/{id}/merge_requests/{noteable_id}/notes",
        [
            {"in": "path", "name": "id", "type": "string", "required": True},
            {"in": "path", "name": "noteable_id", "type": "integer", "required": True},
        ],
        {
            "type": "object",
            "properties": {"body": {"type": "string"}, "internal": {"type": "boolean"}},
            "required": ["body"],
        },
        {"201": {"type": "object", "properties": {"id": {"type": "integer"}, "body": {"type": "string"}}}},
    )
    return description


# -- the server ----------------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One request the fake received."""

    operation: str
    method: str
    raw_path: str
    path_params: dict[str, Any]
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    verified: bool


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    undescribed: bool = False
    """A fault the test injects on purpose (a 502): not checked against the description."""


Handler = Callable[[Call], "Reply | Awaitable[Reply]"]


class SpecForge:
    """The fake forge (see the module's description). ``prefix`` is where the API is mounted below the server's
    root (GitHub Enterprise Server's ``/api/v3``, a GitLab relative URL root)."""

    def __init__(self, description: Description, prefix: str = "") -> None:
        self.description = description
        self.prefix = prefix.rstrip("/")
        self.handlers: dict[str, Handler] = {}
        self.faults: dict[str, list[Reply]] = {}
        self.calls: list[Call] = []
        self.problems: list[str] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def on(self, operation: str, handler: Handler) -> None:
        if operation not in self.description.operations:
            raise KeyError(f"{operation} is not an operation of {self.description.source}")
        self.handlers[operation] = handler

    def fail(self, operation: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``operation`` with ``status`` (not checked: a fault on purpose)."""
        self.faults.setdefault(operation, []).extend(
            Reply(status, {"message": f"injected {status}"}, undescribed=True) for _ in range(times)
        )

    def called(self, operation: str) -> list[Call]:
        return [call for call in self.calls if call.operation == operation]

    async def __aenter__(self) -> SpecForge:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}{self.prefix}"
        return self

    async def __aexit__(self, kind: object, exc: object, traceback: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if kind is None and self.problems:
            raise AssertionError(
                "the fake forge found calls or answers outside the description:\n- " + "\n- ".join(self.problems)
            )

    # -- one request -----------------------------------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.Response:
        raw_path = request.raw_path.split("?", 1)[0]
        where = f"{request.method} {raw_path}"
        if not raw_path.startswith(self.prefix + "/"):
            self.problems.append(f"{where}: outside the API root {self.prefix or '/'}")
            return web.json_response({"message": "Not Found"}, status=404)
        relative = raw_path[len(self.prefix) :]
        for operation in self.description.operations.values():
            match = operation.pattern.match(relative)
            if match and operation.method == request.method:
                break
        else:
            self.problems.append(f"{where}: no operation of {self.description.source} has this method and path")
            return web.json_response({"message": "Not Found"}, status=404)
        raw_body = await request.read()
        body: Any = None
        if raw_body:
            if request.content_type != "application/json":
                self.problems.append(f"{where}: a body of type {request.content_type}, not application/json")
            try:
                body = json.loads(raw_body)
            except ValueError:
                self.problems.append(f"{where}: the body is not JSON")
        call = Call(
            operation=operation.name,
            method=request.method,
            raw_path=raw_path,
            path_params={name: unquote(value) for name, value in match.groupdict().items()},
            query=dict(request.query),
            body=body,
            headers=dict(request.headers),
            verified=operation.verified,
        )
        self.calls.append(call)
        self._check_request(operation, call, where)
        faults = self.faults.get(operation.name)
        if faults:
            reply = faults.pop(0)
        else:
            handler = self.handlers.get(operation.name)
            if handler is None:
                self.problems.append(f"{where}: the test has no answer for {operation.name}")
                return web.json_response({"message": "no handler"}, status=500)
            result = handler(call)
            reply = await result if isinstance(result, Awaitable) else result
        if not reply.undescribed:
            self._check_reply(operation, reply, where)
        if reply.body is None:
            return web.Response(status=reply.status, headers=reply.headers)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    def _check_request(self, operation: Operation, call: Call, where: str) -> None:
        described = {(p.get("in"), p.get("name")): p for p in operation.parameters}
        for (place, name), parameter in described.items():
            present = call.path_params if place == "path" else call.query if place == "query" else None
            if present is None:
                continue
            if parameter.get("required") and name not in present:
                self.problems.append(f"{where}: the required {place} parameter {name} is missing")
            if name in present:
                self._validate(
                    _parameter_schema(parameter), _typed(present[name], parameter), f"{where}: {place} {name}"
                )
        for name in call.query:
            if ("query", name) not in described:
                self.problems.append(f"{where}: query parameter {name} is not described for {operation.name}")
        if operation.body_schema is None:
            if call.body is not None:
                self.problems.append(f"{where}: a body, but {operation.name} takes none")
            return
        if call.body is None:
            if operation.body_required:
                self.problems.append(f"{where}: no body, but {operation.name} requires one")
            return
        self._validate(operation.body_schema, call.body, f"{where}: request body")
        top = self.description.resolve(operation.body_schema)
        if isinstance(call.body, dict) and isinstance(top, dict) and "properties" in top:
            for name in call.body:
                if name not in top["properties"]:
                    self.problems.append(f"{where}: request body field {name} is not described for {operation.name}")

    def _check_reply(self, operation: Operation, reply: Reply, where: str) -> None:
        status = str(reply.status)
        if status not in operation.responses and "default" not in operation.responses:
            self.problems.append(f"{where}: the answer {status} is not described for {operation.name}")
            return
        schema = operation.responses.get(status, operation.responses.get("default"))
        if schema is not None and reply.body is not None:
            self._validate(schema, reply.body, f"{where}: answer {status}")

    def _validate(self, schema: Mapping[str, Any], value: Any, what: str) -> None:
        errors = sorted(self.description.validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
        for error in errors[:5]:
            location = "/".join(str(part) for part in error.absolute_path) or "(top)"
            self.problems.append(f"{what}: {location}: {error.message[:300]}")


def _parameter_schema(parameter: Mapping[str, Any]) -> dict[str, Any]:
    if "schema" in parameter:
        return dict(parameter["schema"])
    return {key: parameter[key] for key in ("type", "enum", "items", "minimum", "maximum") if key in parameter}


def _typed(value: Any, parameter: Mapping[str, Any]) -> Any:
    """A path/query string as the type its parameter describes ("12" → 12, "true" → True)."""
    kind = _parameter_schema(parameter).get("type")
    if kind == "integer" and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    if kind == "array" and isinstance(value, str):
        return value.split(",")
    return value


# -- answers built from the descriptions' examples -----------------------------------------------------------------

SHA_HEAD = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
SHA_MERGE = "e5bd3914e2e596debea16f433f57875b5b90bcd6"
SHA_SQUASH = "1f7a2c9e0b3d4c5f6a7b8c9d0e1f2a3b4c5d6e7f"


def github_pull(
    description: Description,
    repository: str,
    number: int,
    *,
    head: str = "deploy/podtato-head-1",
    base: str = "main",
    state: str = "open",
    merged: bool = False,
    mergeable: bool | None = True,
    mergeable_state: str = "clean",
    labels: tuple[str, ...] = (),
    head_repository: str | None = None,
) -> dict[str, Any]:
    """GitHub's ``pull-request`` example, adjusted: this repository, number, branches and state."""
    pull = description.example("pull-request")
    _adjust_github(pull, repository, number, head, base, state, merged, labels, head_repository)
    pull["merged"] = merged
    pull["mergeable"] = mergeable
    pull["mergeable_state"] = mergeable_state
    if merged:
        pull["merged_by"] = copy.deepcopy(pull["user"])
    else:
        pull["merged_by"] = None
    return pull


def github_pull_simple(
    description: Description,
    repository: str,
    number: int,
    *,
    head: str = "deploy/podtato-head-1",
    base: str = "main",
    labels: tuple[str, ...] = (),
    head_repository: str | None = None,
) -> dict[str, Any]:
    """An item of GitHub's ``pull-request-simple-items`` example (what the list answers), adjusted."""
    pull = description.example("pull-request-simple-items")[0]
    _adjust_github(pull, repository, number, head, base, "open", False, labels, head_repository)
    return pull


GITHUB_EXAMPLE_FIXES = {
    "requested_teams[].type": "the description's pull request examples list a requested team without `type`, "
    "which its team-simple schema requires (enum organization/enterprise): the answers add type organization",
}
"""Where GitHub's published examples disagree with its published schemas, and what the answers change."""


def fix_github_example(pull: dict[str, Any]) -> dict[str, Any]:
    """Apply :data:`GITHUB_EXAMPLE_FIXES` to a pull request example (in place; returned for chaining)."""
    for team in pull.get("requested_teams") or ():
        team.setdefault("type", "organization")
    return pull


def _adjust_github(
    pull: dict[str, Any],
    repository: str,
    number: int,
    head: str,
    base: str,
    state: str,
    merged: bool,
    labels: tuple[str, ...],
    head_repository: str | None,
) -> None:
    fix_github_example(pull)
    pull["number"] = number
    pull["html_url"] = f"https://github.com/{repository}/pull/{number}"
    pull["state"] = state
    pull["head"]["ref"] = head
    pull["head"]["sha"] = SHA_HEAD
    pull["head"]["label"] = f"{(head_repository or repository).split('/')[0]}:{head}"
    pull["head"]["repo"]["full_name"] = head_repository or repository
    pull["base"]["ref"] = base
    pull["base"]["repo"]["full_name"] = repository
    pull["merged_at"] = "2011-01-26T19:01:12Z" if merged else None
    pull["closed_at"] = "2011-01-26T19:01:12Z" if state == "closed" else None
    pull["merge_commit_sha"] = SHA_MERGE
    template = pull["labels"][0] if pull["labels"] else {"id": 1, "node_id": "x", "url": "", "color": "ffffff"}
    pull["labels"] = [{**copy.deepcopy(template), "name": name, "default": False} for name in labels]


def _example_of(description: Description, name: str) -> dict[str, Any]:
    """An object of definition ``name`` from its properties' own ``example`` values (GitLab gives no whole
    examples of its answers), nested definitions included."""
    definition = description.raw["definitions"][name]
    value: dict[str, Any] = {}
    for key, prop in definition.get("properties", {}).items():
        if "example" in prop:
            value[key] = copy.deepcopy(prop["example"])
        elif "$ref" in prop and description.raw["definitions"].get(prop["$ref"].rsplit("/", 1)[1]):
            value[key] = _example_of(description, prop["$ref"].rsplit("/", 1)[1])  # not the uncopied ones
    return value


def gitlab_merge_request(
    description: Description,
    project: str,
    iid: int,
    *,
    source: str = "deploy/podtato-head-1",
    target: str = "main",
    state: str = "opened",
    detailed_merge_status: str = "mergeable",
    merge_commit_sha: str | None = None,
    squash_commit_sha: str | None = None,
    merged_by: str | None = None,
    closed_by: str | None = None,
    labels: tuple[str, ...] = (),
    source_project_id: int = 4,
    web_root: str = "https://gitlab.com",
) -> dict[str, Any]:
    """A merge request built from ``API_Entities_MergeRequest``'s property examples, adjusted."""
    mr = _example_of(description, "API_Entities_MergeRequest")
    for wrong in ("assignees", "assignee", "reviewers"):
        # described as one user (GitLab returns a list for assignees/reviewers): left out, the adapter reads none
        mr.pop(wrong, None)
    user = _example_of(description, "API_Entities_UserBasic")
    mr.update(
        iid=iid,
        state=state,
        source_branch=source,
        target_branch=target,
        source_project_id=source_project_id,
        target_project_id=mr["project_id"],
        sha=SHA_HEAD,
        web_url=f"{web_root}/{project}/-/merge_requests/{iid}",
        detailed_merge_status=detailed_merge_status,
        merge_status="can_be_merged" if detailed_merge_status == "mergeable" else "cannot_be_merged",
        labels=list(labels),
        draft=False,
        squash=squash_commit_sha is not None,
        has_conflicts=detailed_merge_status == "conflict",
        merge_commit_sha=merge_commit_sha,
        squash_commit_sha=squash_commit_sha,
        merged_by={**user, "username": merged_by} if merged_by else None,
        merge_user={**user, "username": merged_by} if merged_by else None,
        merged_at="2022-11-14T17:22:01.470Z" if state == "merged" else None,
        closed_by={**user, "username": closed_by} if closed_by else None,
        closed_at="2022-11-14T17:22:01.470Z" if state == "closed" else None,
        reference=f"!{iid}",
        diff_refs={"base_sha": SHA_MERGE, "head_sha": SHA_HEAD, "start_sha": SHA_MERGE},
    )
    return mr
