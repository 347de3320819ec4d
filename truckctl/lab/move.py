"""The daily move: `lab up STAGE` on a lab of another stage moves it there, without `lab down`.

A race is one lab for all its days (DESIGN section 15): the cloud stand-in is kept with everything it
received, and only what differs between the two stages changes:
- nodes of trucks absent from the new stage's tech zone are switched off (their disks, namespaces and
  links kept, the host's address on their LAN removed) and parked until a stage brings them back;
- nodes whose addresses change (a truck on another LAN for the day) are re-addressed in place: their
  interfaces, the host's address on their bridge, the lab's known_hosts, their hosts file and apt
  proxy, the apt cache's listening addresses; the truck tier then reconverges what they run;
- parked nodes of a returning truck are switched on again; nodes the lab has never had are built;
- the stand-in is told the new stage: it tags every message with it from then on, and expects only
  today's trucks (an absent truck raises no alarm).

`plan_move` is pure (unit-tested); `apply_move` does it, under the lab's lock, on a complete lab.
"""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.lab import aptcache, naming, network, node, rootfs, standin
from truckctl.lab import state as st
from truckctl.lab.control import (
    BOOT_TIMEOUT_S,
    NODE_STOP_TIMEOUT_S,
    Progress,
    _identities,
    _supervisor_alive,
    connection_for,
)
from truckctl.lab.paths import LabPaths
from truckctl.lab.pki import LabPki
from truckctl.lab.plan import LabPlan, NodePlan
from truckctl.lab.probe import standin_json, wait_ready
from truckctl.lab.rootwrite import write_file
from truckctl.lab.ssh import ssh_run
from truckctl.lab.system import NSPAWN_RUNTIME, cgroup_roots, kill_cgroup, make_cgroup, signal_process, wait_gone
from truckctl.lifecycle.webhttp import ExchangeFailed

STANDIN_MOVE_TIMEOUT_S = 20.0
ADDRESS_FIELDS = ("address", "prefixlen", "host_address", "uplink_address", "uplink_prefixlen")


@dataclass(frozen=True)
class MovePlan:
    """What moving the lab from one stage to another changes, node by node (names, sorted)."""

    from_stage: str
    to_stage: str
    stop: tuple[str, ...]  # nodes of trucks absent from the new stage: switched off and parked
    start: tuple[str, ...]  # parked nodes of a truck back in the tech zone: switched on again
    build: tuple[str, ...]  # nodes the lab has never had: built as `lab up` builds them
    readdress: tuple[str, ...]  # nodes whose addresses change (kept running, or re-addressed before start)
    keep: tuple[str, ...]  # nodes that stay as they are
    trucks_parked: tuple[str, ...]
    trucks_joined: tuple[str, ...]
    trucks_readdressed: tuple[str, ...]

    @property
    def changes(self) -> bool:
        return bool(self.stop or self.start or self.build or self.readdress or self.from_stage != self.to_stage)

    def to_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


def _refuse(message: str) -> TruckctlError:
    return TruckctlError.single("lab-move", message + ": run `truckctl lab down` first, then `truckctl lab up "
                                "STAGE` (the stand-in's data is lost with it)", exit_code=ExitCode.ERROR)


def plan_move(current: LabPlan, parked: list[NodePlan], target: LabPlan) -> MovePlan:
    """What changes from the running lab (its plan and its parked nodes) to the target stage's plan.
    Refuses a move the lab cannot make in place (another race, lab or uplink; a node that changes
    truck or role)."""
    if current.lab_id != target.lab_id or current.race_id != target.race_id:
        raise _refuse(f"the lab of {current.stage} belongs to another race or lab")
    if current.uplink != target.uplink or current.standin != target.standin:
        raise _refuse(f"the lab uplink differs between {current.stage} and {target.stage}")
    now = {n.name: n for n in current.truck_nodes}
    off = {n.name: n for n in parked if n.name not in now}
    stop, start, build, readdress, keep = [], [], [], [], []
    for item in target.truck_nodes:
        before = now.get(item.name) or off.get(item.name)
        if before is None:
            build.append(item.name)
            continue
        if (before.truck, before.role, before.uplink_veth) != (item.truck, item.role, item.uplink_veth):
            raise _refuse(f"node {item.name} is truck {before.truck}'s {before.role} in {current.stage} but "
                          f"truck {item.truck}'s {item.role} in {target.stage}")
        if item.name in off:
            start.append(item.name)
        moved = any(getattr(before, f) != getattr(item, f) for f in ADDRESS_FIELDS)
        if moved:
            readdress.append(item.name)
        elif item.name in now:
            keep.append(item.name)
    targets = {n.name for n in target.truck_nodes}
    stop = [name for name in now if name not in targets]
    lans = {t.name: (t.cidr, t.host_address) for t in current.trucks}
    new_lans = {t.name: (t.cidr, t.host_address) for t in target.trucks}
    return MovePlan(
        from_stage=current.stage, to_stage=target.stage,
        stop=tuple(sorted(stop)), start=tuple(sorted(start)), build=tuple(sorted(build)),
        readdress=tuple(sorted(readdress)), keep=tuple(sorted(keep)),
        trucks_parked=tuple(sorted(set(lans) - set(new_lans))),
        trucks_joined=tuple(sorted(set(new_lans) - set(lans))),
        trucks_readdressed=tuple(sorted(t for t in set(lans) & set(new_lans) if lans[t] != new_lans[t])),
    )


def parked_after(current: LabPlan, parked: list[NodePlan], target: LabPlan) -> list[NodePlan]:
    """The nodes the lab keeps switched off on the target stage (as they were last planned)."""
    targets = {n.name for n in target.truck_nodes}
    kept = {n.name: n for n in parked if n.name not in targets}
    kept.update({n.name: n for n in current.truck_nodes if n.name not in targets})
    return sorted(kept.values(), key=lambda n: n.name)


# ---- doing it ---------------------------------------------------------------------------------

def apply_move(state: st.LabState, target: LabPlan, paths: LabPaths, progress: Progress) -> dict[str, Any]:
    """Move a complete, healthy lab to the target plan. The state is marked incomplete while it moves:
    a move that fails half-way is named by the next `up`, and `lab down` removes everything."""
    started = time.monotonic()
    current = state.plan
    move = plan_move(current, state.parked, target)
    progress(f"moving the lab from {move.from_stage} to {move.to_stage}: "
             f"{_say(move)}; the stand-in keeps what it received")
    state.complete = False
    state.save()
    nodes = {n.name: n for n in target.truck_nodes}
    before = {n.name: n for n in [*current.truck_nodes, *state.parked]}

    _stop_nodes(state, [before[name] for name in move.stop], progress)
    _move_bridges(state, current, target, move)
    _identities(target, paths)  # known_hosts of today's nodes at their new addresses; certificates
    authorized = paths.ssh_key.with_name("id_ed25519.pub").read_text().strip()
    for name in move.readdress:
        progress(f"re-addressing {name}: {before[name].address} -> {nodes[name].address}")
        network.readdress_node(nodes[name])
    for name in (*move.readdress, *move.start):
        node.write_identity(node.merged_dir(paths.root, nodes[name]), target, nodes[name],
                            paths.host_key(name), authorized)
    # the stand-in first: a node switched on publishes within seconds, and what it sends is today's
    _move_standin(state, target, paths, move)
    roots = cgroup_roots()
    for name in move.build:
        progress(f"building {name}, new in the lab")
        item = nodes[name]
        network.make_node_network(state, target, item)
        merged = node.mount_overlay(state, paths.root, item, [rootfs.base_path()])
        node.write_identity(merged, target, item, paths.host_key(name), authorized)
        node.launch(state, paths.root, item, merged, roots)
    for name in move.start:
        progress(f"switching {name} on again")
        item = nodes[name]
        kill_cgroup(item.cgroup, roots)
        merged = node.merged_dir(paths.root, item)
        image = merged.stat()
        (NSPAWN_RUNTIME / "locks" / f"inode-{image.st_dev}:{image.st_ino}").unlink(missing_ok=True)
        node.launch(state, paths.root, item, merged, roots)
    restarted = _apt_cache(state, current, target, paths)
    # a node someone switched off (a drill) is re-addressed but stays off, for the prechecks to report
    boot = _wait_nodes(target, paths, [*move.build, *move.start,
                                       *(name for name in move.readdress if _supervisor_alive(state, name))])

    state.parked = parked_after(current, state.parked, target)
    state.stage, state.plan, state.fingerprint = target.stage, target, target.fingerprint()
    state.complete = True
    state.save()
    return {**move.to_dict(), "seconds": round(time.monotonic() - started, 1), "boot": boot,
            "restarted": restarted}


def _say(move: MovePlan) -> str:
    parts = [f"{label} {', '.join(names)}" for label, names in (
        ("park", move.trucks_parked), ("bring back or build", move.trucks_joined),
        ("re-address", move.trucks_readdressed)) if names]
    return "; ".join(parts) or "same trucks, same LANs"


def _stop_nodes(state: st.LabState, items: list[NodePlan], progress: Progress) -> None:
    """Switch nodes off as a power button would (the supervisor stops the guest cleanly)."""
    if not items:
        return
    progress(f"switching off {', '.join(n.name for n in items)} (not in today's tech zone)")
    procs = {r.name: r for r in state.of_kind(st.PROCESS)}
    running = [(int(procs[n.name].data["pid"]), procs[n.name].data.get("start")) for n in items if n.name in procs]
    for pid, start in running:
        signal_process(pid, start, signal.SIGTERM)
    wait_gone(running, NODE_STOP_TIMEOUT_S)
    roots = cgroup_roots()
    for item in items:
        kill_cgroup(item.cgroup, roots)


def _move_bridges(state: st.LabState, current: LabPlan, target: LabPlan, move: MovePlan) -> None:
    """The host's address on each truck LAN: removed for a parked truck (its route with it), moved for a
    re-addressed one, set for a returning or new one (its bridge made if the lab never had it)."""
    old = {t.name: t for t in current.trucks}
    for name in move.trucks_parked:
        network.flush_addresses(old[name].bridge)
    for truck in target.trucks:
        if truck.name in move.trucks_readdressed or truck.name in move.trucks_joined:
            if network.link_exists(truck.bridge):
                network.flush_addresses(truck.bridge)
            network.make_bridge(state, truck.bridge, truck.host_address, int(truck.cidr.split("/")[1]))


def _apt_cache(state: st.LabState, current: LabPlan, target: LabPlan, paths: LabPaths) -> list[str]:
    """apt-cacher-ng listens on the host's lab addresses: restarted when they change."""
    if sorted(current.host_addresses()) == sorted(target.host_addresses()):
        return []
    proc = next((r for r in state.of_kind(st.PROCESS) if r.name == "apt-cacher-ng"), None)
    if proc is not None:
        signal_process(int(proc.data["pid"]), proc.data.get("start"), signal.SIGTERM)
        wait_gone([(int(proc.data["pid"]), proc.data.get("start"))], 5)
    rel = naming.cgroup(target.lab_id, "apt-cacher-ng")
    roots = cgroup_roots()
    kill_cgroup(rel, roots)
    aptcache.start(state, paths.acng, target.host_addresses(), rel, make_cgroup(rel, roots))
    return ["apt-cacher-ng"]


def _move_standin(state: st.LabState, target: LabPlan, paths: LabPaths, move: MovePlan) -> None:
    """Tell the running stand-in the new stage (it reloads its configuration without losing what it
    holds); a truck it has never served gets its broker ACL too. Waits until it reports the stage."""
    merged = node.merged_dir(paths.root, target.standin)
    known = {n.truck for n in [*state.plan.truck_nodes, *state.parked] if n.truck}
    pki = LabPki(paths.pki)
    if move.build and not {t.name for t in target.trucks} <= known:
        write_file(merged, "etc/mosquitto/acl-trucks", standin.acl_trucks(target, also=sorted(known)))
        code, out = ssh_run(connection_for(paths), target.uplink.standin_address, "systemctl reload mosquitto")
        if code != 0:
            raise TruckctlError.single("lab-standin", f"the stand-in's broker did not reload its ACL: {out}",
                                       target.standin.name)
    write_file(merged, "etc/truckctl-standin/config.json", json.dumps(standin.service_config(target), indent=1) + "\n")
    tls = standin.operator_tls(pki)
    deadline = time.monotonic() + STANDIN_MOVE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if standin_json(target, tls, "/status", timeout=3).get("stage") == target.stage:
                return
        except (ExchangeFailed, ValueError, AttributeError):
            pass
        time.sleep(0.3)
    raise TruckctlError.single("lab-standin", f"the stand-in did not move to {target.stage} within "
                               f"{STANDIN_MOVE_TIMEOUT_S:.0f} s", target.standin.name)


def _wait_nodes(target: LabPlan, paths: LabPaths, names: list[str]) -> list[dict[str, Any]]:
    items = [n for n in target.truck_nodes if n.name in set(names)]
    if not items:
        return []
    conn = connection_for(paths)
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        boot = list(pool.map(lambda n: wait_ready(n, conn, target, deadline), items))
    late = [b for b in boot if not b["ready"]]
    if late:
        raise TruckctlError([Problem("lab-boot", f"node {b['node']} is not ready after the move to {target.stage} "
                                     f"(systemd: {b['systemd']})") for b in late])
    return boot



def stage_counts(plan: LabPlan, paths: LabPaths) -> dict[str, dict[str, dict[str, int]]] | None:
    """What the stand-in received on each stage, per truck (telemetry and heartbeat messages); None when
    it does not answer."""
    try:
        seen = standin_json(plan, standin.operator_tls(LabPki(paths.pki)), "/status", timeout=3)
        return {stage: {truck: {"telemetry": int(row["telemetry"]), "heartbeat": int(row["heartbeat"])}
                        for truck, row in rows.items()} for stage, rows in seen["stages"].items()}
    except (ExchangeFailed, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
