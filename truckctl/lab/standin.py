"""The cloud stand-in node: Mosquitto with mutual TLS and per-truck ACLs, plus the stand-in service.

Its files are written into the node's overlay before it boots; the packages come from the cached
stand-in layer (see rootfs.py), so a warm `lab up` installs nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from truckctl.cloud.outputs import heartbeat_topic, telemetry_topic, topic_prefix
from truckctl.lab.pki import LabPki, client_id
from truckctl.lab.plan import STANDIN, STANDIN_HTTP_PORT, STANDIN_MQTT_PORT, LabPlan

SERVICE_SOURCE = Path(__file__).with_name("standin_service.py")
LOCAL_MQTT_PORT = 1883
UNIT = "truckctl-standin.service"


def mosquitto_conf(address: str) -> str:
    return f"""# truckctl lab: the cloud stand-in's broker (written by truckctl lab up)
per_listener_settings true
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
# Like the cloud ingest, the stand-in does not drop a burst: a slower reader (the stand-in service,
# a test's subscriber) gets this many QoS 1 messages queued (mosquitto's default, 1000, drops the rest).
max_queued_messages 100000

# What the trucks' bridges connect to: mutual TLS, the certificate CN is the MQTT username.
# Revoked truck certificates (truckctl down) are refused at the handshake through the CA's CRL.
listener {STANDIN_MQTT_PORT} {address}
cafile /etc/mosquitto/certs/ca.pem
certfile /etc/mosquitto/certs/server.pem
keyfile /etc/mosquitto/certs/server.key
crlfile /etc/mosquitto/certs/crl.pem
tls_version tlsv1.2
require_certificate true
use_identity_as_username true
allow_anonymous false
acl_file /etc/mosquitto/acl-trucks

# Local only, for the stand-in service: read-only to everything.
listener {LOCAL_MQTT_PORT} 127.0.0.1
allow_anonymous true
acl_file /etc/mosquitto/acl-local
"""


def acl_trucks(plan: LabPlan) -> str:
    """Each truck's certificate may publish (and read) only under its own topic prefix."""
    lines = ["# truckctl lab: one block per truck certificate (user = certificate CN)"]
    for truck in plan.trucks:
        lines += ["", f"user {client_id(plan.race_id, truck.name)}",
                  f"topic readwrite {topic_prefix(plan.race_id, truck.name)}/#"]
    return "\n".join(lines) + "\n"


ACL_LOCAL = "# anonymous clients on 127.0.0.1: the stand-in service reads everything\ntopic read #\n"


def service_config(plan: LabPlan) -> dict[str, object]:
    return {
        "race_id": plan.race_id,
        "prefixes": {t.name: topic_prefix(plan.race_id, t.name) for t in plan.trucks},
        "telemetry_topics": {t.name: telemetry_topic(plan.race_id, t.name) for t in plan.trucks},
        "heartbeat_topics": {t.name: heartbeat_topic(plan.race_id, t.name) for t in plan.trucks},
        "stale_after_s": plan.stale_after_s,
        "mqtt_host": "127.0.0.1", "mqtt_port": LOCAL_MQTT_PORT,
        "http_host": "0.0.0.0", "http_port": STANDIN_HTTP_PORT,
        "check_interval_s": 1,
    }


UNIT_TEXT = """[Unit]
Description=truckctl lab cloud stand-in (ingest view, alert receiver, stale-stream alarms)
After=mosquitto.service network.target
Wants=mosquitto.service

[Service]
ExecStart=/usr/bin/python3 /usr/local/lib/truckctl-standin/standin_service.py /etc/truckctl-standin/config.json
Restart=always
RestartSec=1
DynamicUser=yes

[Install]
WantedBy=multi-user.target
"""


def _group_id(root: Path, group: str) -> int:
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return int(fields[2])
    raise ValueError(f"no group {group!r} in the stand-in image")


def write_files(root: Path, plan: LabPlan, pki: LabPki) -> None:
    certs = root / "etc/mosquitto/certs"
    certs.mkdir(parents=True, exist_ok=True)
    server = pki.leaf("standin-server")
    (certs / "ca.pem").write_bytes(pki.ca.cert.read_bytes())
    (certs / "server.pem").write_bytes(server.cert.read_bytes())
    key = certs / "server.key"
    key.write_bytes(server.key.read_bytes())
    os.chown(key, 0, _group_id(root, "mosquitto"))  # mosquitto reads it after dropping root
    os.chmod(key, 0o640)
    write_revocations(root, plan, pki)
    (root / "etc/mosquitto/acl-trucks").write_text(acl_trucks(plan))
    (root / "etc/mosquitto/acl-local").write_text(ACL_LOCAL)
    lib = root / "usr/local/lib/truckctl-standin"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "standin_service.py").write_bytes(SERVICE_SOURCE.read_bytes())
    conf = root / "etc/truckctl-standin"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "config.json").write_text(json.dumps(service_config(plan), indent=1) + "\n")
    (root / "etc/systemd/system" / UNIT).write_text(UNIT_TEXT)
    wants = root / "etc/systemd/system/multi-user.target.wants" / UNIT
    wants.parent.mkdir(parents=True, exist_ok=True)
    if not wants.is_symlink():
        wants.symlink_to(f"/etc/systemd/system/{UNIT}")


def write_revocations(root: Path, plan: LabPlan, pki: LabPki) -> None:
    """The CRL and the broker config that checks it (also rewritten on a running stand-in by
    `revoke_truck`, so a stand-in built before CRLs existed starts checking them too)."""
    certs = root / "etc/mosquitto/certs"
    tmp = certs / "crl.pem.tmp"
    tmp.write_bytes(pki.crl_pem())
    os.chmod(tmp, 0o644)
    tmp.replace(certs / "crl.pem")
    (root / "etc/mosquitto/mosquitto.conf").write_text(mosquitto_conf(plan.uplink.standin_address))


def issue_certificates(pki: LabPki, plan: LabPlan) -> None:
    pki.ensure_server("standin-server", STANDIN, plan.uplink.standin_address, [STANDIN])
    for truck in plan.trucks:
        pki.ensure_client(f"truck-{truck.name}", client_id(plan.race_id, truck.name))
