"""What the cloud side has seen: on the lab, the stand-in's HTTPS API (last telemetry and heartbeats
per truck, alerts), called with truckctl's own client certificate and the lab CA pinned. On aws this
is CloudWatch, which needs the Pulumi CLI and credentials.

The stand-in is a node a truck could have compromised: what is read from it is bounded (one deadline
on the whole exchange, MAX_BYTES of answer) and must be a JSON object.
"""

from __future__ import annotations

import json
from typing import Any

from truckctl.cloud.outputs import CloudOutputs
from truckctl.errors import TruckctlError
from truckctl.lifecycle.webhttp import BadUrl, ClientTls, ExchangeFailed, Target, exchange, parse_url
from truckctl.target import TargetKind

TIMEOUT_S = 3.0
MAX_BYTES = 4 * 2**20


def standin_target(cloud: CloudOutputs, path: str) -> Target:
    """The stand-in serves /status and /alerts beside the alert receiver the lab's outputs name."""
    if TargetKind(cloud.target) is not TargetKind.lab or not cloud.alert_webhook_url:
        raise TruckctlError.single("no-standin", "cloud-side status comes from the lab's stand-in; "
                                   "on aws it needs CloudWatch")
    try:
        receiver = parse_url(cloud.alert_webhook_url)
    except BadUrl as exc:
        raise TruckctlError.single("no-standin", f"the lab's stand-in address is not usable: {exc}") from None
    return Target(receiver.scheme, receiver.host, receiver.port, path)


def standin_tls(cloud: CloudOutputs) -> ClientTls:
    if cloud.standin_client_files is None:
        raise TruckctlError.single("no-standin", "the lab's outputs carry no credential for the stand-in's API "
                                   "(a lab from an older truckctl: `truckctl lab down`, then `lab up`)")
    cert, key = cloud.standin_client_files
    return ClientTls(cloud.ca_pem, cert, key)


def fetch(cloud: CloudOutputs, path: str, timeout_s: float = TIMEOUT_S, max_bytes: int = MAX_BYTES) -> Any:
    """GET a JSON object from the stand-in, bounded in time and size."""
    target = standin_target(cloud, path)
    try:
        reply = exchange(target, "GET", deadline_s=timeout_s, max_bytes=max_bytes, tls=standin_tls(cloud))
    except ExchangeFailed as exc:
        raise TruckctlError.single("standin-unreachable", f"the cloud stand-in does not answer at "
                                   f"{target.shown}{path}: {exc}") from None
    if reply.status != 200:
        raise TruckctlError.single("standin-unreachable", f"the cloud stand-in refused {path} (HTTP {reply.status})")
    try:
        document = json.loads(reply.body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise TruckctlError.single("standin-unreachable", f"the cloud stand-in's {path} is not a JSON object")
    return document
