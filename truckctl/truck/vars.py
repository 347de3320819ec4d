"""Variables the playbooks get from truckctl besides the rendered inventory.

Split in two on purpose: `cloud_vars` may appear anywhere (command line, artifacts), while
`secret_vars` only ever travel vault-encrypted with a one-time password (see `vault.py`).
"""

from __future__ import annotations

from pathlib import Path

from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.model import Stage
from truckctl.errors import TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.target import TargetKind, parse_kind

# Where chronyd may not steer the clock and networkd must not take over the interfaces: the
# lab's containers (no CAP_SYS_TIME, which must never be granted; SSH runs over the eth0 the lab
# configured; no VLAN or WireGuard module in the kernel). Files are still rendered and checked.
LAB_TARGET_VARS: JsonObject = {
    "truck_target": TargetKind.lab.value,
    "time_clock_control": False,
    "network_activate": False,
}
AWS_TARGET_VARS: JsonObject = {"truck_target": TargetKind.aws.value}


TARGET_VARS: dict[TargetKind, JsonObject] = {TargetKind.lab: LAB_TARGET_VARS, TargetKind.aws: AWS_TARGET_VARS}


def target_vars(target: TargetKind | str) -> JsonObject:
    return dict(TARGET_VARS[parse_kind(target)])


def admin_vars(private_key: Path | str) -> JsonObject:
    """The public half of truckctl's connection key: the live-state check keeps exactly it (and the
    account's configured ops key) in the connecting account's authorized keys. Without a readable
    `.pub` beside the key, that account's keys are left unchecked (never a lock-out)."""
    try:
        text = Path(f"{private_key}.pub").read_text(encoding="utf-8")
    except OSError:
        return {}
    keys = [line.strip() for line in text.splitlines() if line.strip()]
    return {"truck_admin_keys": keys} if keys else {}


def check_cloud_outputs(stage: Stage, cloud: CloudOutputs, target: str) -> None:
    """Refuse outputs that must not reach a real apply: placeholders, another target, missing trucks."""
    if cloud.placeholder:
        raise TruckctlError.single("placeholder-outputs", "the cloud outputs are placeholders from an offline "
                                   "plan: they are never applied to trucks", "CloudOutputs")
    if cloud.target != target:
        raise TruckctlError.single("target-mismatch", f"the cloud outputs are for target {cloud.target!r}, "
                                   f"the run is for {target!r}", "CloudOutputs")
    missing = [t.name for t in stage.trucks if t.name not in cloud.trucks]
    if missing:
        raise TruckctlError.single("missing-truck-access", f"the cloud outputs have no ingest access for "
                                   f"{', '.join(missing)}", "CloudOutputs.trucks")


def cloud_vars(stage: Stage, cloud: CloudOutputs) -> JsonObject:
    """The non-secret cloud values the telemetry and vpn roles need (for the stage's trucks only)."""
    return {
        "cloud_mqtt_host": cloud.mqtt_host,
        "cloud_mqtt_port": cloud.mqtt_port,
        "cloud_ca_pem": cloud.ca_pem,
        "cloud_cidr": str(stage.cloud.cidr),
        "cloud_vpn_endpoint": cloud.vpn_endpoint,
        "cloud_vpn_public_key": cloud.vpn_public_key,
        "cloud_trucks": {
            t.name: {
                "client_id": cloud.trucks[t.name].client_id,
                "thing_name": cloud.trucks[t.name].thing_name,
                "topic_prefix": cloud.trucks[t.name].topic_prefix,
                "certificate_pem": cloud.trucks[t.name].certificate_pem,
            }
            for t in stage.trucks
        },
    }


def secret_vars(stage: Stage, cloud: CloudOutputs) -> JsonObject:
    """Values that must never be written in clear or appear in a log: the trucks' private keys."""
    return {"cloud_truck_keys": {t.name: cloud.trucks[t.name].private_key_pem.get_secret_value()
                                 for t in stage.trucks}}
