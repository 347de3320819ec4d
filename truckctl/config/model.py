"""Typed configuration model: one race file and one file per stage (DESIGN section 3).

Models only check what a single value can tell (types, ranges, formats). Rules that relate
values to each other (uniqueness, containment, overlap, references) live in `rules.py`, so
every problem is reported with its file and field path in one pass.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from truckctl.config.names import reserved_account
from truckctl.text import hidden


def printable_text(value: str) -> str:
    """Free text is data: no control, format (bidi, zero-width), separator or unassigned characters,
    however they were written (raw, or as a YAML escape such as "\\e", "\\n" or "\\u2028"). They
    would end a line in a rendered file, or drive the terminal that shows the value."""
    for index, char in enumerate(value):
        if hidden(char):
            raise ValueError(f"expected printable text, found the control or formatting character U+{ord(char):04X} "
                             f"at position {index + 1}")
    return value


def _not_system_account(value: str) -> str:
    if reserved_account(value):
        raise ValueError(f"expected a person's user name, {value!r} is an account or group of the nodes' base "
                         "system or of the packages truckctl installs")
    return value


DnsName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")]
EnvVarName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]{0,63}$")]
Port = Annotated[int, Field(ge=1, le=65535)]
VlanId = Annotated[int, Field(ge=2, le=4094)]
Email = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$")]
SshPublicKey = Annotated[
    str,
    StringConstraints(pattern=r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/=]{16,}( .*)?$",
                      max_length=16_384),
    AfterValidator(printable_text),
]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=80), AfterValidator(printable_text)]
UserName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$"), AfterValidator(_not_system_account)]
def _time_of_day(value: object) -> dt.time:
    """"HH:MM" (24 h). YAML reads an unquoted 11:00 as the number 660 (base 60): said so."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f'expected a time of day in quotes such as "11:00", got the number {value} (YAML reads '
                         "an unquoted 11:00 as a number)")
    if not isinstance(value, str) or not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
        raise ValueError(f'expected a time of day "HH:MM" such as "11:00", got {value!r}')
    return dt.time(int(value[:2]), int(value[3:]))


TimeOfDay = Annotated[dt.time, BeforeValidator(_time_of_day)]
TimeZone = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_+-]{1,30}(/[A-Za-z0-9_+-]{1,30}){0,2}$")]


class Model(BaseModel):
    """Base: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SecretRef(Model):
    """A secret named by where it lives, never by value."""

    env: EnvVarName


class RaceInfo(Model):
    name: ShortText
    id: DnsName = Field(description="short slug used in cloud resource names")
    timezone: TimeZone = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"expected an IANA time zone such as Europe/Rome, got {value!r}") from None
        except KeyError:
            raise ValueError(f"expected an IANA time zone such as Europe/Rome, got {value!r}") from None
        return value


class Cloud(Model):
    region: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")]
    cidr: IPv4Network
    vpn_port: Port = 51820

    @field_validator("cidr")
    @classmethod
    def _cloud_cidr_size(cls, value: IPv4Network) -> IPv4Network:
        if not 16 <= value.prefixlen <= 24:
            raise ValueError(f"expected a prefix between /16 and /24, got /{value.prefixlen}")
        if not value.is_private:
            raise ValueError(f"expected a private range, got {value}")
        return value


class Alerts(Model):
    email: list[Email] = Field(min_length=1)
    webhook: SecretRef | None = None


class Uplink(Model):
    kind: Literal["cellular", "satellite", "fiber", "wifi"] = "cellular"
    mtu: Annotated[int, Field(ge=576, le=9000)] = 1400


class Telemetry(Model):
    feed_port: Port = 1883
    heartbeat_interval_s: Annotated[int, Field(ge=1, le=60)] = 5
    stale_after_s: Annotated[int, Field(ge=5, le=600)] = 20
    queue_messages: Annotated[int, Field(ge=1000, le=10_000_000)] = 1_000_000


class Defaults(Model):
    uplink: Uplink = Uplink()
    telemetry: Telemetry = Telemetry()
    ntp_servers: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.-]{1,253}$")]] = Field(
        default_factory=lambda: ["0.debian.pool.ntp.org", "1.debian.pool.ntp.org"]
    )


class RoleSpec(Model):
    description: ShortText
    gateway: bool = False
    allow_tcp: list[Port] = Field(default_factory=list)
    allow_udp: list[Port] = Field(default_factory=list)


class OpsUser(Model):
    name: UserName
    ssh_public_key: SshPublicKey


class Vlan(Model):
    id: VlanId
    name: DnsName
    cidr: IPv4Network


class Node(Model):
    name: DnsName
    role: DnsName
    address: IPv4Address


class Truck(Model):
    name: DnsName
    lan: IPv4Network
    vlans: list[Vlan] = Field(default_factory=list)
    nodes: list[Node] = Field(min_length=1, max_length=64)


class Lab(Model):
    """Addresses the lab of simulated trucks uses besides the trucks' own."""

    uplink_cidr: IPv4Network = IPv4Network("100.64.10.0/24")


def _host_key_blob(value: str) -> str:
    """The key's type must be the one its blob names (a pasted key of another kind is a mistake)."""
    kind, blob = value.split(" ")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("expected a host key's base64 blob, it does not decode") from None
    length = int.from_bytes(raw[:4], "big")
    if len(raw) < 4 + length or raw[4:4 + length] != kind.encode():
        raise ValueError(f"expected a {kind} key blob, the blob holds another key type")
    return value


# A pinned host key as `ssh-keyscan` prints it without the host: "TYPE BASE64" (no comment).
SshHostKey = Annotated[
    str,
    StringConstraints(pattern=r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]{16,}={0,2}$",
                      max_length=16_384),
    AfterValidator(_host_key_blob),
]
# A host name or an IPv4 address: DNS labels, never starting with "-" (no option for ssh to read).
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HostName = Annotated[str, StringConstraints(max_length=253, pattern=rf"^{_LABEL}(\.{_LABEL})*$")]
JumpUser = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]


class JumpHop(Model):
    """One hop of the management path: a jump host reached with SSH, its host key(s) pinned."""

    name: DnsName
    host: HostName
    port: Port = 22
    user: JumpUser
    host_keys: list[SshHostKey] = Field(default_factory=list, max_length=8)


class Management(Model):
    """How operators outside the truck reach its nodes: SSH jumps, in order (the first is dialled first).
    Host keys may also come from the target's known_hosts (the lab vouches for its stand-in's)."""

    jump: list[JumpHop] = Field(min_length=1, max_length=4)


class Race(Model):
    race: RaceInfo
    cloud: Cloud
    alerts: Alerts
    secrets: dict[DnsName, SecretRef] = Field(default_factory=dict)
    ops_users: list[OpsUser] = Field(default_factory=list)
    defaults: Defaults = Defaults()
    roles: dict[DnsName, RoleSpec] = Field(min_length=1)
    trucks: list[Truck] = Field(min_length=1, max_length=16)
    lab: Lab = Lab()
    management: Management | None = None


class NetworkOverride(Model):
    """A stage's tech-zone network choice for one truck."""

    lan: IPv4Network | None = None
    vlans: list[Vlan] | None = None
    addresses: dict[DnsName, IPv4Address] = Field(default_factory=dict)


class StageInfo(Model):
    number: Annotated[int, Field(ge=1, le=30)]
    date: dt.date
    start: ShortText
    finish: ShortText
    kind: Literal["flat", "hilly", "mountain", "itt", "ttt", "rest"] = "flat"
    distance_km: Annotated[float, Field(ge=0, le=400)] = 0
    # The race window, in the race's time zone: while inside it (or while telemetry flows) the stage is
    # live and changes that would interrupt telemetry wait (truckctl/lifecycle/racelive.py).
    live_from: TimeOfDay | None = None
    live_until: TimeOfDay | None = Field(default=None, validate_default=True)

    @field_validator("live_until")
    @classmethod
    def _window(cls, value: dt.time | None, info: ValidationInfo) -> dt.time | None:
        start = info.data.get("live_from")
        if value is None and start is not None:
            raise ValueError("expected live_until with live_from: the race window needs both ends")
        if value is not None and "live_from" in info.data and start is None:
            raise ValueError("expected live_from with live_until: the race window needs both ends")
        if value is not None and start is not None and value <= start:
            raise ValueError(f"expected a time after live_from ({start:%H:%M}), got {value:%H:%M}")
        return value


class TechZone(Model):
    name: ShortText
    trucks: list[DnsName] = Field(min_length=1)
    networks: dict[DnsName, NetworkOverride] = Field(default_factory=dict)


class StageFile(Model):
    stage: StageInfo
    tech_zone: TechZone
    overrides: dict[str, object] = Field(default_factory=dict)


class Stage(Model):
    """A stage resolved against its race: the object every other part of truckctl consumes."""

    name: str
    info: StageInfo
    tech_zone: ShortText
    race: RaceInfo
    cloud: Cloud
    alerts: Alerts
    secrets: dict[str, SecretRef]
    ops_users: list[OpsUser]
    defaults: Defaults
    roles: dict[str, RoleSpec]
    trucks: list[Truck]
    lab: Lab
    management: Management | None = None

    def nodes(self) -> list[tuple[Truck, Node]]:
        return [(truck, node) for truck in self.trucks for node in truck.nodes]

    def gateway(self, truck: Truck) -> Node:
        return next(n for n in truck.nodes if self.roles[n.role].gateway)

