"""The gateway agent's evidence document (CONTRACT-14, schema v1), read as untrusted data.

The document comes from a truck node (a file read over SSH, or a message on the truck's evidence
topic): a compromised node may send anything. `parse` bounds its size and every collection, checks
the shape and the types field by field, and returns either `GatewayEvidence` or `BadEvidence` with
a one-line reason: no input makes it raise. Strings are kept short and printable; they are data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

SCHEMA = 1
MAX_BYTES = 256 * 1024
MAX_NODES = 256
MAX_CONFLICTS = 64
MAX_MACS = 16
MAX_NEIGHBOURS = 1024
MAX_TEXT = 200
CLOUD_ERRORS = (None, "unreachable", "tls-refused", "other")


@dataclass(frozen=True)
class Uplink:
    iface: str
    carrier: bool
    address: str | None


@dataclass(frozen=True)
class CloudLink:
    connected: bool
    error: str | None  # None | "unreachable" | "tls-refused" | "other"
    detail: str


@dataclass(frozen=True)
class NodeSeen:
    reachable: bool
    heartbeat_age_s: float | None


@dataclass(frozen=True)
class Conflict:
    address: str
    macs: tuple[str, ...]
    since: float


@dataclass(frozen=True)
class GatewayEvidence:
    truck: str
    node: str
    ts: float
    seq: int
    uplink: Uplink
    cloud: CloudLink
    broker_active: bool
    bridge_connected: bool
    bridge_queued: int | None
    feed_messages_10s: int
    feed_last_age_s: float | None
    nodes: dict[str, NodeSeen]
    clock: dict[str, float | None]
    conflicts: tuple[Conflict, ...]
    neighbours: tuple[tuple[str, str], ...]  # (address, mac)


@dataclass(frozen=True)
class BadEvidence:
    """A document that is not the contract's: the reason, one line (never the document itself)."""

    reason: str


class _Bad(Exception):
    pass


def _printable(value: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in value[:MAX_TEXT])


def _obj(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _Bad(f"{where}: expected an object")
    return data


def _str(data: dict[str, Any], key: str, where: str, *, optional: bool = False) -> str | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise _Bad(f"{where}.{key}: expected a string of 1 to {MAX_TEXT} characters")
    return _printable(value)


def _bool(data: dict[str, Any], key: str, where: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise _Bad(f"{where}.{key}: expected true or false")
    return value


def _int(data: dict[str, Any], key: str, where: str, *, optional: bool = False) -> int | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise _Bad(f"{where}.{key}: expected a non-negative integer")
    return value


def _float(data: dict[str, Any], key: str, where: str, *, optional: bool = False,
           signed: bool = False) -> float | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or abs(value) > 1e12 or (value < 0 and not signed):
        raise _Bad(f"{where}.{key}: expected a finite{'' if signed else ' non-negative'} number")
    return float(value)


def _names(data: dict[str, Any], key: str) -> dict[str, Any]:
    table = _obj(data.get(key), key)
    if len(table) > MAX_NODES:
        raise _Bad(f"{key}: more than {MAX_NODES} nodes")
    for name in table:
        if not name or len(name) > 64:
            raise _Bad(f"{key}: a node name of 1 to 64 characters expected")
    return table


def _build(data: Any) -> GatewayEvidence:
    doc = _obj(data, "document")
    if doc.get("v") != SCHEMA or isinstance(doc.get("v"), bool):
        raise _Bad(f"v: expected {SCHEMA}")
    uplink = _obj(doc.get("uplink"), "uplink")
    cloud = _obj(doc.get("cloud"), "cloud")
    error = cloud.get("error")
    if error not in CLOUD_ERRORS:
        raise _Bad("cloud.error: expected null, unreachable, tls-refused or other")
    detail = cloud.get("detail", "")
    if not isinstance(detail, str):
        raise _Bad("cloud.detail: expected a string")
    bridge = _obj(doc.get("bridge"), "bridge")
    feed = _obj(doc.get("feed"), "feed")
    nodes = {_printable(name): NodeSeen(_bool(_obj(seen, f"nodes.{name}"), "reachable", f"nodes.{name}"),
                                        _float(seen, "heartbeat_age_s", f"nodes.{name}", optional=True))
             for name, seen in _names(doc, "nodes").items()}
    clock = {_printable(name): _float(_obj(seen, f"clock.{name}"), "offset_s", f"clock.{name}", optional=True,
                                      signed=True)
             for name, seen in _names(doc, "clock").items()}
    conflicts_raw = doc.get("conflicts", [])
    if not isinstance(conflicts_raw, list) or len(conflicts_raw) > MAX_CONFLICTS:
        raise _Bad(f"conflicts: expected a list of at most {MAX_CONFLICTS}")
    conflicts = []
    for index, raw in enumerate(conflicts_raw):
        item = _obj(raw, f"conflicts[{index}]")
        macs = item.get("macs")
        if not isinstance(macs, list) or not macs or len(macs) > MAX_MACS or \
                not all(isinstance(m, str) and 0 < len(m) <= 64 for m in macs):
            raise _Bad(f"conflicts[{index}].macs: expected a list of 1 to {MAX_MACS} MAC strings")
        conflicts.append(Conflict(str(_str(item, "address", f"conflicts[{index}]")),
                                  tuple(_printable(m) for m in macs),
                                  float(_float(item, "since", f"conflicts[{index}]") or 0.0)))
    neighbours_raw = doc.get("neighbours", [])
    if not isinstance(neighbours_raw, list) or len(neighbours_raw) > MAX_NEIGHBOURS:
        raise _Bad(f"neighbours: expected a list of at most {MAX_NEIGHBOURS}")
    neighbours = []
    for index, raw in enumerate(neighbours_raw):
        item = _obj(raw, f"neighbours[{index}]")
        neighbours.append((str(_str(item, "address", f"neighbours[{index}]")),
                           str(_str(item, "mac", f"neighbours[{index}]"))))
    return GatewayEvidence(
        truck=str(_str(doc, "truck", "document")), node=str(_str(doc, "node", "document")),
        ts=float(_float(doc, "ts", "document") or 0.0), seq=int(_int(doc, "seq", "document") or 0),
        uplink=Uplink(str(_str(uplink, "iface", "uplink")), _bool(uplink, "carrier", "uplink"),
                      _str(uplink, "address", "uplink", optional=True)),
        cloud=CloudLink(_bool(cloud, "connected", "cloud"), error, _printable(detail)),
        broker_active=_bool(_obj(doc.get("broker"), "broker"), "active", "broker"),
        bridge_connected=_bool(bridge, "connected", "bridge"),
        bridge_queued=_int(bridge, "queued", "bridge", optional=True),
        feed_messages_10s=int(_int(feed, "messages_last_10s", "feed") or 0),
        feed_last_age_s=_float(feed, "last_message_age_s", "feed", optional=True),
        nodes=nodes, clock=clock, conflicts=tuple(conflicts), neighbours=tuple(neighbours))


def parse(raw: bytes | str, truck: str | None = None, node: str | None = None) -> GatewayEvidence | BadEvidence:
    """The document, or why it is not one. `truck`/`node`: who it must come from (a node never
    speaks for another truck's gateway)."""
    if len(raw) > MAX_BYTES:
        return BadEvidence(f"larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return BadEvidence("not JSON")
    try:
        evidence = _build(data)
    except _Bad as exc:
        return BadEvidence(str(exc))
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:  # e.g. a key that is not a string
        return BadEvidence(f"unreadable ({type(exc).__name__})")
    if truck is not None and evidence.truck != truck:
        return BadEvidence(f"truck: expected {truck!r}, the document speaks for {evidence.truck!r}")
    if node is not None and evidence.node != node:
        return BadEvidence(f"node: expected {node!r}, the document speaks for {evidence.node!r}")
    return evidence
