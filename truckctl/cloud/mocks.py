"""Pulumi mocks for the offline plan: fake but well-formed provider answers, and a monitor that
records every registration (type, name, inputs, parent, dependencies, protect/retain).

Imports pulumi at the top: only the offline worker and tests import this module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pulumi.runtime import mocks, rpc
from pulumi.runtime.sync_await import _ensure_event_loop

from truckctl.jsondoc import JsonObject

ACCOUNT_ID = "123456789012"  # AWS's documentation account id: obviously not a real one
PLACEHOLDER = "placeholder"


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    dependencies: list[str]
    protect: bool
    retain_on_delete: bool
    inputs: JsonObject = field(default_factory=dict)
    id: str = ""


def _digest(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


class PlanMocks(mocks.Mocks):
    """Answers resource registrations with their inputs plus the outputs programs read (ids, ARNs...)."""

    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region

    def call(self, args: mocks.MockCallArgs) -> tuple[JsonObject, list[tuple[str, str]]]:
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/{PLACEHOLDER}",
                    "userId": PLACEHOLDER, "id": ACCOUNT_ID}, []
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{zone}" for zone in "abc"]
            return {"names": names, "zoneIds": [f"{self.region}-az{i}" for i in (1, 2, 3)], "id": self.region}, []
        if token == "aws:iot/getEndpoint:getEndpoint":
            return {"endpointAddress": f"{PLACEHOLDER}-ats.iot.{self.region}.amazonaws.com", "id": self.region}, []
        if token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-00000000000000000", "name": PLACEHOLDER, "architecture": "x86_64"}, []
        return {}, []

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, JsonObject]:
        inputs = dict(args.inputs)
        if args.typ.startswith("pulumi:providers:"):
            # The program's explicit provider carries the race's region: ARNs from now on use it.
            self.region = str(inputs.get("region") or self.region)
            return f"{args.name}-provider-id", inputs
        rid, extra = self._outputs(args.typ, args.name, inputs)
        return rid, {**inputs, **extra}

    def _outputs(self, typ: str, name: str, inputs: JsonObject) -> tuple[str, JsonObject]:
        """Ids and ARNs in each service's real format, so policy documents built from them look real."""
        region, account = self.region, ACCOUNT_ID
        physical = str(inputs.get("name") or inputs.get("bucket") or name)
        service = typ.split(":")[1].split("/")[0]
        if typ == "aws:s3/bucket:Bucket":
            return physical, {"arn": f"arn:aws:s3:::{physical}", "bucket": physical}
        if typ == "aws:kms/key:Key":
            key_id = f"{_digest(name, length=8)}-0000-4000-8000-{_digest(name, 'k', length=12)}"
            return key_id, {"keyId": key_id, "arn": f"arn:aws:kms:{region}:{account}:key/{key_id}"}
        if typ == "aws:kinesis/stream:Stream":
            return physical, {"arn": f"arn:aws:kinesis:{region}:{account}:stream/{physical}"}
        if typ == "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream":
            return physical, {"arn": f"arn:aws:firehose:{region}:{account}:deliverystream/{physical}"}
        if typ == "aws:sns/topic:Topic":
            arn = f"arn:aws:sns:{region}:{account}:{physical}"
            return arn, {"arn": arn}
        if typ == "aws:iam/role:Role":
            return physical, {"arn": f"arn:aws:iam::{account}:role/{physical}", "uniqueId": _digest(name)}
        if typ == "aws:iot/certificate:Certificate":
            cert_id = _digest(name, length=64)
            return cert_id, {"arn": f"arn:aws:iot:{region}:{account}:cert/{cert_id}",
                             "certificatePem": f"-----BEGIN CERTIFICATE-----\n{PLACEHOLDER}\n"
                                               "-----END CERTIFICATE-----\n",
                             "privateKey": PLACEHOLDER,  # an offline plan holds no key, nor anything key-shaped
                             "publicKey": PLACEHOLDER}
        if typ == "aws:ssm/parameter:Parameter":
            return physical, {"arn": f"arn:aws:ssm:{region}:{account}:parameter{physical}"}
        if typ == "aws:ec2/instance:Instance":
            instance_id = f"i-{_digest(name)}"
            return instance_id, {"arn": f"arn:aws:ec2:{region}:{account}:instance/{instance_id}",
                                 "primaryNetworkInterfaceId": f"eni-{_digest(name, 'eni')}",
                                 "privateIp": "192.0.2.10"}
        if typ == "aws:ec2/eip:Eip":
            return f"eipalloc-{_digest(name)}", {"publicIp": "203.0.113.10"}  # TEST-NET-3
        rid = f"{name}-{_digest(typ, name, length=8)}"
        return rid, {"arn": f"arn:aws:{service}:{region}:{account}:{name}"}


class CaptureMonitor(mocks.MockMonitor):
    """The stock monitor drops dependencies and resource options: record them on the way through."""

    def __init__(self, plan_mocks: PlanMocks) -> None:
        super().__init__(plan_mocks)
        self.registrations: dict[str, Registration] = {}

    def RegisterResource(self, request: Any) -> Any:
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type != "pulumi:pulumi:Stack":
            _ensure_event_loop()  # deserialising resource references needs a loop on this thread
            self.registrations[urn] = Registration(
                type=request.type, name=request.name, urn=urn, parent=request.parent, custom=request.custom,
                dependencies=list(request.dependencies), protect=request.protect,
                retain_on_delete=request.retainOnDelete,
                # Deserialised again here (the base class does the same) to keep secrets wrapped.
                inputs=rpc.deserialize_properties(request.object, keep_internal=False))
        response = super().RegisterResource(request)
        if urn in self.registrations:
            self.registrations[urn].id = response.id
        return response


def is_secret(value: Any) -> bool:
    return bool(rpc.is_rpc_secret(value))
