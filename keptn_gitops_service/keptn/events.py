"""Keptn CloudEvents: decode both wire shapes, encode structured CloudEvents 1.0, build replies.

Two JSON shapes reach a Keptn service:

* structured CloudEvents JSON written by cloudevents/sdk-go (shipyard-controller, distributor, helm-service),
  with ``datacontenttype`` and the Keptn extensions as top-level keys;
* go-utils ``models.KeptnContextExtendedCE`` JSON [go-utils:pkg/api/models/keptn_context_extended_c_e.go]
  (api-service, the go-utils sdk/cp-connector), with ``contenttype`` instead of ``datacontenttype``, a
  ``time`` that may be Go's zero value ``0001-01-01T00:00:00Z`` and an optional ``extensions`` object.

:func:`from_json` accepts both and yields one immutable :class:`KeptnEvent`; :func:`to_structured` writes
structured CloudEvents JSON through the cloudevents SDK (which is what the distributor's ``/event`` endpoint
and NATS subscribers built on sdk-go expect); :func:`make_reply` builds the ``.started``/``.finished`` answer
exactly like helm-service's ``HandlerBase.sendEvent`` [keptn@0.18.1:helm-service/controller/handler_base.go].
Every problem with the input is an :class:`~keptn_gitops_service.errors.EventError` naming the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from dateutil.parser import isoparse

from keptn_gitops_service.errors import EventError

__all__ = [
    "CONTENT_TYPE",
    "KEPTN_SPEC_VERSION",
    "MAX_DATA_DEPTH",
    "MAX_EVENT_BYTES",
    "MAX_IDENTITY_LENGTH",
    "EventKind",
    "KeptnEvent",
    "describe_json_type",
    "from_json",
    "make_reply",
    "plain_copy",
    "reply_type",
    "to_structured",
]

MAX_EVENT_BYTES: Final = 1_048_576
"""NATS' default ``max_payload``: nothing larger can have travelled through Keptn's NATS."""

MAX_IDENTITY_LENGTH: Final = 256
"""The longest ``id``, ``shkeptncontext`` or ``triggeredid`` accepted (Keptn's are 36-character UUIDs)."""

MAX_DATA_DEPTH: Final = 100
"""How deeply ``data`` may nest (Keptn data is a handful of levels; Helm values rarely exceed ten)."""

CONTENT_TYPE: Final = JSONFormat.CONTENT_TYPE
"""``application/cloudevents+json``: the Content-Type of a structured-mode CloudEvent."""

KEPTN_SPEC_VERSION: Final = "0.2.4"
"""go-utils' hard-coded ``shkeptnspecversion`` [go-utils:config/config.yaml, pkg/lib/v0_2_0/events.go]."""

SPEC_VERSION: Final = "1.0"
DATA_CONTENT_TYPE: Final = "application/json"
EVENT_TYPE_PREFIX: Final = "sh.keptn."
TASK_EVENT_PREFIX: Final = "sh.keptn.event."

EventKind = Literal["triggered", "started", "status.changed", "finished", "invalidated"]
_KINDS: Final[dict[str, EventKind]] = {kind: kind for kind in get_args(EventKind)}

_MAX_INT_DIGITS: Final = 4000  # below CPython's int/str conversion limit (4300); Go's float64 tops out at 309
_GO_ZERO_TIME: Final = datetime(1, 1, 1, tzinfo=UTC)
_RFC3339: Final = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_EXTENSION_NAME: Final = re.compile(r"[a-z0-9]+")
_JSON_MEDIA_TYPE: Final = JSONFormat.JSON_CONTENT_TYPE_PATTERN

# Attributes KeptnEvent models itself, plus the shape-specific spellings from_json consumes.
_KEPTN_EXTENSIONS: Final = ("shkeptncontext", "triggeredid", "gitcommitid", "shkeptnspecversion")
_RESERVED: Final = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "datacontenttype",
        "time",
        "data",
        "data_base64",
        "contenttype",
        "extensions",
        *_KEPTN_EXTENSIONS,
    }
)
# Attributes that identify an event in commit trailers and in the state store.
_IDENTITIES: Final = ("id", "shkeptncontext", "triggeredid")
# CloudEvents' optional attributes that Keptn never sets; passed through with the extensions if present.
_PASSTHROUGH_ATTRIBUTES: Final = frozenset({"subject", "dataschema"})


# ------------------------------------------------------------------------------------------------------------
# Small helpers shared with keptn.data
# ------------------------------------------------------------------------------------------------------------


def describe_json_type(value: object) -> str:
    """Name a decoded JSON value's type for an error message: ``an object``, ``a string``, ``null`` …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"an instance of {type(value).__name__}"


def _quote(value: str, limit: int = 80) -> str:
    """``repr`` of a (possibly hostile) input string, shortened so that messages stay readable."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _check_json_value(value: object, where: str) -> None:
    """Raise unless *value* is plain JSON (str-keyed objects, arrays, strings, finite numbers, bools, null).

    Iterative, so deeply nested input cannot exhaust the Python stack.
    """
    stack: list[tuple[object, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DATA_DEPTH:
            raise EventError(f"{where} is nested deeper than {MAX_DATA_DEPTH} levels (at {path})")
        if isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise EventError(f"{path} has a key that is not a string: {key!r}")
                stack.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            raise EventError(f"{path} must be a finite number, got {item!r}")
        elif item is not None and not isinstance(item, str | int | float):
            raise EventError(f"{path} must be a JSON value, got {describe_json_type(item)}")


def plain_copy(value: Any) -> Any:
    """A deep copy of JSON-like *value* made of plain ``dict``/``list`` containers (read-only mappings such as
    :attr:`KeptnEvent.data` and tuples included), ready for ``json.dumps`` and equal to decoded JSON."""
    if isinstance(value, Mapping):
        return {key: plain_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_copy(item) for item in value]
    return value


def _frozen_copy(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view of a private deep copy of *mapping* (nested values are plain JSON containers)."""
    return MappingProxyType(plain_copy(mapping))


# ------------------------------------------------------------------------------------------------------------
# Event type classification [go-utils:pkg/lib/v0_2_0/events.go, keptn.go; spec:cloudevents.md]
# ------------------------------------------------------------------------------------------------------------


def _classify(event_type: str) -> tuple[str | None, EventKind | None]:
    """``(task, kind)`` of an event type.

    ``sh.keptn.event.<task>.<kind>`` is a task event; ``sh.keptn.event.<stage>.<sequence>.<kind>`` (and
    ``project.create.*`` …) has a kind but no task. ``<task>.status.changed`` counts as a task event as
    go-utils' ``GetStatusChangedEventType`` builds it, although go-utils' ``IsTaskEventType`` (which only
    counts five dot-separated parts) misclassifies it as a sequence type.
    """
    if not event_type.startswith(TASK_EVENT_PREFIX):
        return None, None
    rest = event_type.removeprefix(TASK_EVENT_PREFIX)
    if rest.endswith(".status.changed"):
        head, kind_name = rest.removesuffix(".status.changed"), "status.changed"
    else:
        head, _, kind_name = rest.rpartition(".")
    kind = _KINDS.get(kind_name)
    if not head or kind is None:
        return None, None
    return (head if "." not in head else None), kind


def reply_type(triggered_type: str, kind: str) -> str:
    """The type answering a task ``.triggered`` type: ``sh.keptn.event.deployment.triggered`` + ``finished``
    → ``sh.keptn.event.deployment.finished`` [go-utils:pkg/lib/v0_2_0/events.go Get<Kind>EventType]."""
    task, triggered_kind = _classify(triggered_type)
    if task is None or triggered_kind != "triggered":
        raise EventError(f"type {_quote(triggered_type)} is not a task .triggered event type")
    if kind not in ("started", "status.changed", "finished"):
        raise EventError(f"a reply kind must be 'started', 'status.changed' or 'finished', got {_quote(kind)}")
    return f"{TASK_EVENT_PREFIX}{task}.{kind}"


# ------------------------------------------------------------------------------------------------------------
# The event
# ------------------------------------------------------------------------------------------------------------


def _check_nonempty_string(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise EventError(f"{name} must be a string, got {describe_json_type(value)}")
    if not value:
        raise EventError(f"{name} is empty")


def _check_string(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise EventError(f"{name} must be a string, got {describe_json_type(value)}")


def _check_identity(value: str, name: str) -> None:
    """An identity (``id``, ``shkeptncontext``, ``triggeredid``) is written into commit trailers and matched
    exactly: one bounded line of printable characters, without surrounding whitespace."""
    if len(value) > MAX_IDENTITY_LENGTH:
        raise EventError(f"{name} is {len(value)} characters long, at most {MAX_IDENTITY_LENGTH} are allowed")
    bad = next((ch for ch in value if not ch.isprintable()), None)
    if bad is not None:
        raise EventError(f"{name} must be a single line of printable characters, but {_quote(value)} contains {bad!r}")
    if value != value.strip():
        raise EventError(f"{name} must not begin or end with whitespace, got {_quote(value)}")


def _check_extensions(extensions: Mapping[str, Any]) -> None:
    """CloudEvents 1.0 extension rules (lowercase alphanumeric names; string, integer or boolean values),
    plus no clash with an attribute :class:`KeptnEvent` models itself."""
    for name, value in extensions.items():
        if not isinstance(name, str) or not _EXTENSION_NAME.fullmatch(name):
            raise EventError(f"extension attribute {name!r} must be named with lowercase letters and digits only")
        if name in _RESERVED:
            raise EventError(f"extension attribute {name!r} clashes with a Keptn event attribute")
        if name in _PASSTHROUGH_ATTRIBUTES:
            _check_nonempty_string(value, name)
        elif not isinstance(value, str | int):  # bool is an int
            raise EventError(
                f"extension attribute {name!r} must be a string, integer or boolean, got {describe_json_type(value)}"
            )


def _normalise_time(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise EventError(f"time must be a datetime, got {describe_json_type(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise EventError("time must be timezone-aware")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class KeptnEvent:
    """One Keptn CloudEvent, validated at construction (like cloudevents' ``CloudEvent``).

    ``data`` and ``extensions`` are stored as read-only views of private deep copies. Empty Keptn extensions
    (``triggeredid``, ``gitcommitid`` …) mean "absent". ``time`` is normalised to UTC; ``None`` means
    the event carried none (or Go's zero time).
    """

    id: str
    type: str
    source: str
    shkeptncontext: str
    data: Mapping[str, Any]
    time: datetime | None
    triggeredid: str = ""
    gitcommitid: str = ""
    shkeptnspecversion: str = ""
    specversion: str = SPEC_VERSION
    datacontenttype: str = DATA_CONTENT_TYPE
    extensions: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        for name in ("id", "type", "source"):
            _check_nonempty_string(getattr(self, name), name)
        if not self.type.startswith(EVENT_TYPE_PREFIX):
            raise EventError(f"type must start with {EVENT_TYPE_PREFIX!r}, got {_quote(self.type)}")
        for name in _KEPTN_EXTENSIONS:
            _check_string(getattr(self, name), name)
        if self.specversion != SPEC_VERSION:
            raise EventError(f"specversion must be {SPEC_VERSION!r}, got {_quote(self.specversion)}")
        _check_string(self.datacontenttype, "datacontenttype")
        if not _JSON_MEDIA_TYPE.match(self.datacontenttype):
            raise EventError(f"datacontenttype must be a JSON media type, got {_quote(self.datacontenttype)}")
        if not isinstance(self.data, Mapping):
            raise EventError(f"data must be an object, got {describe_json_type(self.data)}")
        _check_json_value(self.data, "data")
        if not isinstance(self.extensions, Mapping):
            raise EventError(f"extensions must be a mapping, got {describe_json_type(self.extensions)}")
        _check_extensions(self.extensions)
        object.__setattr__(self, "time", _normalise_time(self.time))
        object.__setattr__(self, "data", _frozen_copy(self.data))
        object.__setattr__(self, "extensions", MappingProxyType(dict(self.extensions)))

    @property
    def task(self) -> str | None:
        """The task of a task event (``deployment`` for ``sh.keptn.event.deployment.triggered``) or None."""
        return _classify(self.type)[0]

    @property
    def kind(self) -> EventKind | None:
        """``triggered|started|status.changed|finished|invalidated`` of task and sequence events or None."""
        return _classify(self.type)[1]


# ------------------------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------------------------


class _JSONNumberError(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _JSONNumberError(f"{name} is not a valid JSON number")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JSONNumberError(f"{text} is out of range")
    return value


def _parse_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise _JSONNumberError(f"an integer has {len(text)} digits, more than {_MAX_INT_DIGITS}")
    return int(text)


def _decode_text(body: bytes | str, max_bytes: int) -> str:
    """The body as text, after the size and UTF-8 checks."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    if len(raw) > max_bytes:
        raise EventError(f"event is {len(raw)} bytes, more than the limit of {max_bytes} bytes")
    if isinstance(body, str):
        return body
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventError(f"event is not valid UTF-8: {exc.reason} at byte {exc.start}") from None


def _parse_json(text: str) -> Any:
    """``json.loads`` with Go's strictness (no NaN/Infinity, no out-of-range numbers) and precise messages."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise EventError(f"event is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise EventError("event is not valid JSON: it is nested too deeply") from None
    except ValueError as exc:  # _JSONNumberError
        raise EventError(f"event is not valid JSON: {exc}") from None


def _required_string(obj: Mapping[str, Any], name: str) -> str:
    if name not in obj:
        raise EventError(f"{name} is missing")
    value = obj[name]
    _check_nonempty_string(value, name)
    return str(value)


def _optional_string(obj: Mapping[str, Any], name: str) -> str:
    """A string attribute where missing, ``null`` and ``""`` all mean absent (go-utils ``omitempty``)."""
    value = obj.get(name)
    if value is None:
        return ""
    _check_string(value, name)
    return str(value)


def _parse_time(obj: Mapping[str, Any]) -> datetime | None:
    """RFC 3339 ``time``; Go's zero ``time.Time`` (``KeptnContextExtendedCE`` never omits it) means absent."""
    value = obj.get("time")
    if value is None:
        return None
    _check_string(value, "time")
    if not _RFC3339.fullmatch(value):
        raise EventError(f"time is not an RFC 3339 timestamp: {_quote(value)}")
    try:
        parsed = isoparse(value).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise EventError(f"time is not a valid timestamp: {_quote(value)} ({exc})") from None
    return None if parsed == _GO_ZERO_TIME else parsed


def _content_type(obj: Mapping[str, Any]) -> str:
    """``datacontenttype`` (structured CE) or ``contenttype`` (``KeptnContextExtendedCE``); default JSON."""
    return _optional_string(obj, "datacontenttype") or _optional_string(obj, "contenttype") or DATA_CONTENT_TYPE


def _event_data(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without ``temporaryData``, which the distributor/cp-connector inject
    [keptn:distributor/pkg/receiver/receiver.go; go-utils:pkg/sdk/connector/controlplane/controlplane.go]."""
    if "data" not in obj:
        if "data_base64" in obj:
            raise EventError("data_base64 is not supported: Keptn event data must be a JSON object")
        raise EventError("data is missing")
    data = obj["data"]
    if not isinstance(data, dict):
        raise EventError(f"data must be an object, got {describe_json_type(data)}")
    return {key: value for key, value in data.items() if key != "temporaryData"}


def _extensions(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level attributes nobody else models. ``KeptnContextExtendedCE.Extensions`` (an untyped object that
    no go-utils code reads) is checked for its type and dropped."""
    legacy = obj.get("extensions")
    if legacy is not None and not isinstance(legacy, dict):
        raise EventError(f"extensions must be an object, got {describe_json_type(legacy)}")
    return {name: value for name, value in obj.items() if name not in _RESERVED}


def from_json(body: bytes | str, *, max_bytes: int = MAX_EVENT_BYTES) -> KeptnEvent:
    """Decode a Keptn event in either wire shape (see the module docstring).

    ``triggeredid``/``gitcommitid``/``shkeptnspecversion`` of ``""`` are treated as absent (the distributor
    always sets them, possibly empty). ``shkeptncontext`` is required: commits and rollbacks are found by it.
    ``id``, ``shkeptncontext`` and ``triggeredid`` must each be one line of at most
    :data:`MAX_IDENTITY_LENGTH` printable characters (they are written into commit trailers).
    Raises :class:`EventError` naming the offending field; no json/dateutil/cloudevents exception escapes.
    """
    obj = _parse_json(_decode_text(body, max_bytes))
    if not isinstance(obj, dict):
        raise EventError(f"event must be a JSON object, got {describe_json_type(obj)}")
    specversion = _optional_string(obj, "specversion") or SPEC_VERSION
    event = KeptnEvent(
        id=_required_string(obj, "id"),
        type=_required_string(obj, "type"),
        source=_required_string(obj, "source"),
        shkeptncontext=_required_string(obj, "shkeptncontext"),
        data=_event_data(obj),
        time=_parse_time(obj),
        triggeredid=_optional_string(obj, "triggeredid"),
        gitcommitid=_optional_string(obj, "gitcommitid"),
        shkeptnspecversion=_optional_string(obj, "shkeptnspecversion"),
        specversion=specversion,
        datacontenttype=_content_type(obj),
        extensions=_extensions(obj),
    )
    for name in _IDENTITIES:
        if value := getattr(event, name):
            _check_identity(value, name)
    return event


# ------------------------------------------------------------------------------------------------------------
# Encoding and replies
# ------------------------------------------------------------------------------------------------------------


def _keptn_extensions(event: KeptnEvent) -> dict[str, str]:
    """The Keptn extensions that are set; empty ones are omitted like go-utils' ``omitempty``."""
    return {name: value for name in _KEPTN_EXTENSIONS if (value := getattr(event, name))}


def to_structured(event: KeptnEvent) -> bytes:
    """Structured-mode CloudEvents 1.0 JSON (send with ``Content-Type: application/cloudevents+json``).

    Built with the SDK's ``CloudEvent`` + ``JSONFormat().write``: time in UTC with ``Z``, the Keptn extensions
    as top-level keys, empty ``triggeredid``/``gitcommitid`` omitted. This function never reads the clock:
    an event without a time is written with Go's zero time ``0001-01-01T00:00:00Z``, as go-utils'
    ``KeptnContextExtendedCE`` does (and :func:`from_json` reads it back as ``None``); the SDK would
    otherwise stamp "now". Replies get their time from :func:`make_reply`.
    """
    attributes: dict[str, Any] = {
        "specversion": event.specversion,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "datacontenttype": event.datacontenttype,
        "time": _GO_ZERO_TIME if event.time is None else event.time,
        **event.extensions,
        **_keptn_extensions(event),
    }
    try:
        return JSONFormat().write(CloudEvent(attributes, plain_copy(event.data)))
    except (BaseCloudEventException, TypeError, ValueError) as exc:
        raise EventError(f"event cannot be encoded as a CloudEvent: {exc}") from exc


def make_reply(
    trigger: KeptnEvent,
    kind: Literal["started", "finished"],
    data: Mapping[str, Any],
    *,
    source: str,
    now: datetime,
    event_id: str,
) -> KeptnEvent:
    """The ``.started``/``.finished`` answer to a task ``.triggered`` event, like helm-service's
    ``HandlerBase.sendEvent`` [keptn@0.18.1:helm-service/controller/handler_base.go] via go-utils
    ``Keptn.SendCloudEvent``: same ``shkeptncontext``, ``triggeredid`` = the trigger's id,
    ``shkeptnspecversion`` ``0.2.4``, and no ``gitcommitid``. Pure: the caller supplies time and id.
    """
    return KeptnEvent(
        id=event_id,
        type=reply_type(trigger.type, kind),
        source=source,
        shkeptncontext=trigger.shkeptncontext,
        data=data,
        time=now,
        triggeredid=trigger.id,
        shkeptnspecversion=KEPTN_SPEC_VERSION,
    )
