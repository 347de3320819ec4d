"""The cloud stand-in node: Mosquitto with mutual TLS and per-truck ACLs, plus the stand-in service.

Its files are written into the node's overlay before it boots; the packages come from the cached
stand-in layer (see rootfs.py), so a warm `lab up` installs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from truckctl.cloud.outputs import heartbeat_topic, telemetry_topic, topic_prefix
from truckctl.lab import rootwrite
from truckctl.lab.pki import OPERATOR_CN, OPERATOR_LEAF, LabPki, client_id
from truckctl.lab.plan import STANDIN, STANDIN_HTTP_PORT, STANDIN_MQTT_PORT, LabPlan
from truckctl.lifecycle.webhttp import ClientTls
from truckctl.ops.topology import NodeRef, Topology, TruckTopo

SERVICE_SOURCE = Path(__file__).with_name("standin_service.py")
OPS_PACKAGE = Path(__file__).resolve().parent.parent / "ops"  # the diagnosis, run by the service as it is
SERVICE_LIB = "usr/local/lib/truckctl-standin"
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


def acl_trucks(plan: LabPlan, also: list[str] | None = None) -> str:
    """Each truck's certificate may publish (and read) only under its own topic prefix. `also`: trucks
    of other days of the race the lab has served (an identity lasts the race)."""
    lines = ["# truckctl lab: one block per truck certificate (user = certificate CN)"]
    for truck in dict.fromkeys([t.name for t in plan.trucks] + (also or [])):
        lines += ["", f"user {client_id(plan.race_id, truck)}",
                  f"topic readwrite {topic_prefix(plan.race_id, truck)}/#"]
    return "\n".join(lines) + "\n"


ACL_LOCAL = "# anonymous clients on 127.0.0.1: the stand-in service reads everything\ntopic read #\n"


CERTS = "/etc/mosquitto/certs"
REFUSED_FILE = "/etc/truckctl-standin/refused.json"  # truck -> why its certificate is refused (see `refused`)


def service_config(plan: LabPlan) -> dict[str, object]:
    """The service's configuration: who may call its API (certificate CN -> truck, or truckctl), which
    nodes each truck's heartbeats may come from, and where it listens (the uplink address only)."""
    principals = {client_id(plan.race_id, t.name): t.name for t in plan.trucks}
    principals[OPERATOR_CN] = "truckctl"
    return {
        "race_id": plan.race_id,
        "stage": plan.stage,  # every message is counted under it; only its trucks alarm (see move.py)
        "prefixes": {t.name: topic_prefix(plan.race_id, t.name) for t in plan.trucks},
        "nodes": {t.name: [n.name for n in plan.truck_nodes if n.truck == t.name] for t in plan.trucks},
        "telemetry_topics": {t.name: telemetry_topic(plan.race_id, t.name) for t in plan.trucks},
        "heartbeat_topics": {t.name: heartbeat_topic(plan.race_id, t.name) for t in plan.trucks},
        "stale_after_s": plan.stale_after_s,
        "mqtt_host": "127.0.0.1", "mqtt_port": LOCAL_MQTT_PORT,
        "http_host": plan.uplink.standin_address, "http_port": STANDIN_HTTP_PORT,
        "principals": principals,
        "tls": {"ca": f"{CERTS}/ca.pem", "cert": f"{CERTS}/server.pem", "key": f"{CERTS}/server.key",
                "crl": f"{CERTS}/crl.pem"},
        "refused_file": REFUSED_FILE,
        "check_interval_s": 1,
        "topology": topology(plan).to_dict(),
    }


def topology(plan: LabPlan) -> Topology:
    """The dependency model of the lab's trucks (the stage's: same names, addresses and gateways)."""
    trucks = []
    for truck in plan.trucks:
        nodes = tuple(NodeRef(n.name, n.address, n.role, n.uplink_address is not None)
                      for n in plan.truck_nodes if n.truck == truck.name)
        trucks.append(TruckTopo(truck.name, truck.cidr, next(n for n in nodes if n.gateway), nodes))
    return Topology(tuple(trucks), float(plan.stale_after_s))


def ops_files() -> dict[str, bytes]:
    """The service's copy of truckctl.ops (standard library only), under a stub `truckctl` package."""
    files = {f"{SERVICE_LIB}/truckctl/__init__.py": b'"""truckctl.ops for the lab stand-in."""\n'}
    files.update({f"{SERVICE_LIB}/truckctl/ops/{source.name}": source.read_bytes()
                  for source in sorted(OPS_PACKAGE.glob("*.py"))})
    return files


UNIT_TEXT = """[Unit]
Description=truckctl lab cloud stand-in (ingest view, alert receiver, stale-stream alarms)
After=mosquitto.service network.target
Wants=mosquitto.service

[Service]
ExecStart=/usr/bin/python3 /usr/local/lib/truckctl-standin/standin_service.py /etc/truckctl-standin/config.json
Restart=always
RestartSec=1
DynamicUser=yes
# The server key is root:mosquitto 0640 (the broker's): the service reads it through that group.
SupplementaryGroups=mosquitto

[Install]
WantedBy=multi-user.target
"""


def _group_id(root: Path, group: str) -> int:
    for line in rootwrite.read_file(root, "etc/group").decode().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return int(fields[2])
    raise ValueError(f"no group {group!r} in the stand-in image")


def write_files(root: Path, plan: LabPlan, pki: LabPki) -> None:
    """Everything the stand-in needs in its root, written without following links (see rootwrite)."""
    server = pki.leaf("standin-server")
    rootwrite.write_file(root, "etc/mosquitto/certs/ca.pem", pki.ca.cert.read_bytes())
    rootwrite.write_file(root, "etc/mosquitto/certs/server.pem", server.cert.read_bytes())
    # mosquitto and the service (SupplementaryGroups) read the key after dropping root
    rootwrite.write_file(root, "etc/mosquitto/certs/server.key", server.key.read_bytes(), 0o640,
                         (0, _group_id(root, "mosquitto")))
    write_revocations(root, plan, pki)
    rootwrite.write_file(root, "etc/mosquitto/acl-trucks", acl_trucks(plan))
    rootwrite.write_file(root, "etc/mosquitto/acl-local", ACL_LOCAL)
    rootwrite.write_file(root, f"{SERVICE_LIB}/standin_service.py", SERVICE_SOURCE.read_bytes())
    for path, content in ops_files().items():
        rootwrite.write_file(root, path, content)
    rootwrite.write_file(root, "etc/truckctl-standin/config.json", json.dumps(service_config(plan), indent=1) + "\n")
    rootwrite.write_file(root, f"etc/systemd/system/{UNIT}", UNIT_TEXT)
    rootwrite.ensure_symlink(root, f"etc/systemd/system/multi-user.target.wants/{UNIT}", f"/etc/systemd/system/{UNIT}")


def refused(plan: LabPlan, pki: LabPki) -> dict[str, str]:
    """truck -> why the stand-in refuses the certificate it holds: its current certificate's serial is on
    the CRL (a drill's `hold`). What the cloud knows of itself, as IoT Core knows a certificate it revoked.
    A truck whose revoked certificate was replaced already (`truckctl down`) is not listed: which one the
    truck still presents, the cloud side cannot say, and it claims nothing it does not know."""
    revoked = pki.revoked()
    found = {}
    for truck in plan.trucks:
        issued = pki.leaf(f"truck-{truck.name}")
        if issued.cert.exists() and (serial := issued.serial) in revoked:
            found[truck.name] = f"certificate serial {serial} revoked, on the CA's CRL"
    return found


def write_revocations(root: Path, plan: LabPlan, pki: LabPki) -> None:
    """The CRL and the broker config that checks it (also rewritten on a running stand-in by
    `revoke_truck`, so a stand-in built before CRLs existed starts checking them too), and for the
    stand-in service the trucks whose certificate it refuses (it rereads the file when it changes).
    The running stand-in's root is the node's: never written through a link planted in it."""
    rootwrite.write_file(root, "etc/mosquitto/certs/crl.pem", pki.crl_pem(), 0o644)
    rootwrite.write_file(root, "etc/mosquitto/mosquitto.conf", mosquitto_conf(plan.uplink.standin_address))
    rootwrite.write_file(root, REFUSED_FILE.lstrip("/"), json.dumps(refused(plan, pki), indent=1) + "\n", 0o644)


def operator_tls(pki: LabPki) -> ClientTls:
    """truckctl's credential for the stand-in's API: the lab CA pinned, its own client certificate."""
    issued = pki.leaf(OPERATOR_LEAF)
    return ClientTls(pki.ca.cert.read_text(), str(issued.cert), str(issued.key))


def issue_certificates(pki: LabPki, plan: LabPlan) -> None:
    pki.ensure_server("standin-server", STANDIN, plan.uplink.standin_address, [STANDIN])
    for truck in plan.trucks:
        pki.ensure_client(f"truck-{truck.name}", client_id(plan.race_id, truck.name))
    pki.ensure_client(OPERATOR_LEAF, OPERATOR_CN)  # truckctl's own credential for the stand-in's API
