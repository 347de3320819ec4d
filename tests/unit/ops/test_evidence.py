"""The evidence parser: the contract's document read; anything else is BadEvidence, never an exception."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from truckctl.ops import evidence as ev

from .fixtures import MACS, changed, document


def test_the_contracts_document_is_read_field_by_field() -> None:
    doc = document()
    doc["conflicts"] = [{"address": "10.31.1.12", "macs": [MACS["truck-a-hv1"], "0a:00:00:00:00:01"], "since": 5}]
    result = ev.parse(json.dumps(doc), "truck-a", "truck-a-gw")
    assert isinstance(result, ev.GatewayEvidence)
    assert result.uplink == ev.Uplink("uplink0", True, "100.64.43.11")
    assert result.nodes["truck-a-hv1"] == ev.NodeSeen(True, 2.0) and result.clock["truck-a-gw"] == 0.001
    assert result.conflicts[0].macs == (MACS["truck-a-hv1"], "0a:00:00:00:00:01")
    assert ("10.31.1.12", MACS["truck-a-hv1"]) in result.neighbours


def bad(doc: Any) -> str:
    result = ev.parse(doc if isinstance(doc, str | bytes) else json.dumps(doc))
    assert isinstance(result, ev.BadEvidence)
    return result.reason


def test_shape_errors_say_which_field() -> None:
    assert bad("{") == "not JSON"
    assert bad([1]) == "document: expected an object"
    assert bad(changed(document(), "v", 2)) == "v: expected 1"
    assert bad(changed(document(), "uplink.carrier", "yes")) == "uplink.carrier: expected true or false"
    assert bad(changed(document(), "cloud.error", "boom")).startswith("cloud.error:")
    assert bad(changed(document(), "ts", float("nan"))) == "document.ts: expected a finite non-negative number"
    assert bad(changed(document(), "seq", True)) == "document.seq: expected a non-negative integer"
    assert bad(changed(document(), "conflicts", [{"address": "x", "macs": []}])).startswith("conflicts[0].macs")
    assert bad(b"[" * 100_000) == "not JSON"
    assert bad(b" " * (ev.MAX_BYTES + 1)) == f"larger than {ev.MAX_BYTES} bytes"


def test_a_gateway_never_speaks_for_another_truck() -> None:
    result = ev.parse(json.dumps(document("truck-b")), "truck-a", "truck-a-gw")
    assert result == ev.BadEvidence("truck: expected 'truck-a', the document speaks for 'truck-b'")


def test_strings_are_kept_short_and_printable() -> None:
    result = ev.parse(json.dumps(changed(document(), "cloud.detail", "\x1b[31mred\u202e" + "x" * 500)))
    assert isinstance(result, ev.GatewayEvidence)
    assert result.cloud.detail.startswith("?[31mred?") and len(result.cloud.detail) == ev.MAX_TEXT


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=12), children, max_size=4), max_leaves=30)
FIELDS = ["v", "truck", "node", "ts", "seq", "uplink", "cloud", "broker", "bridge", "feed", "nodes", "clock",
          "conflicts", "neighbours", "uplink.carrier", "uplink.address", "cloud.error", "cloud.detail",
          "bridge.queued", "feed.messages_last_10s", "nodes.truck-a-hv1", "clock.truck-a-hv1.offset_s"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400) | st.text(max_size=400))
def test_no_bytes_make_it_raise(raw: bytes | str) -> None:
    assert isinstance(ev.parse(raw), ev.GatewayEvidence | ev.BadEvidence)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), json_values)
def test_no_value_in_any_field_makes_it_raise(field: str, value: Any) -> None:
    result = ev.parse(json.dumps(changed(document(), field, value)), "truck-a")
    assert isinstance(result, ev.GatewayEvidence | ev.BadEvidence)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_no_document_makes_the_diagnosis_raise(value: Any) -> None:
    from truckctl.ops.diagnose import Observations, diagnose

    from .fixtures import NOW, TOPOLOGY, cloud

    result = ev.parse(json.dumps(value))
    diagnosis = diagnose(TOPOLOGY, Observations(NOW, {"truck-a": result}, None, cloud()))
    assert diagnosis.incidents == () or isinstance(result, ev.GatewayEvidence)
