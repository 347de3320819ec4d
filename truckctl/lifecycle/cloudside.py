"""What the cloud side has seen: on the lab, the stand-in's HTTP API (last telemetry and heartbeats
per truck, alerts). On aws this is CloudWatch, which needs the Pulumi CLI and credentials."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from truckctl.cloud.outputs import CloudOutputs
from truckctl.errors import TruckctlError

TIMEOUT_S = 3.0


def standin_url(cloud: CloudOutputs, path: str) -> str:
    """The stand-in serves /status and /alerts beside the alert receiver the lab's outputs name."""
    if cloud.target != "lab" or not cloud.alert_webhook_url:
        raise TruckctlError.single("no-standin", "cloud-side status comes from the lab's stand-in; "
                                   "on aws it needs CloudWatch")
    parts = urlsplit(cloud.alert_webhook_url)
    return f"{parts.scheme}://{parts.netloc}{path}"


def fetch(cloud: CloudOutputs, path: str) -> Any:
    url = standin_url(cloud, path)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TruckctlError.single("standin-unreachable", f"the cloud stand-in does not answer at {url}: "
                                   f"{getattr(exc, 'reason', exc)}") from None
