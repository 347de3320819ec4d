"""`lab up`, `lab down` and `lab status`: the order things are made in, and undone in. What they return
is the command's JSON result (a `JsonObject`).

`up` records each resource in the state file before creating it, so `down` can undo a lab that
crashed half-way; `down` removes exactly what the state recorded (never anything by name pattern,
so other labs on this host, the scratch ones included, are left alone).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from truckctl.config.loader import load_stage
from truckctl.errors import ExitCode, Problem, TruckctlError
from truckctl.jsondoc import JsonObject
from truckctl.lab import aptcache, naming, network, node, registry, rootfs, standin
from truckctl.lab import state as st
from truckctl.lab.access import connection_for
from truckctl.lab.operator import refuse_outside
from truckctl.lab.paths import LabPaths
from truckctl.lab.pki import LabPki
from truckctl.lab.plan import STANDIN_HTTP_PORT, STANDIN_MQTT_PORT, LabPlan, check_host_routes, plan_lab
from truckctl.lab.probe import READY, port_open, ssh_answers, systemd_state, wait_ready
from truckctl.lab.ssh import USER, ensure_keypair, write_known_hosts
from truckctl.lab.system import (
    NSPAWN_RUNTIME,
    cgroup_pids,
    cgroup_roots,
    ensure_inotify_instances,
    kill_cgroup,
    make_cgroup,
    mount_points,
    remove_cgroup,
    remove_empty_parent,
    remove_tree,
    require_root,
    require_tools,
    run,
    signal_process,
    unmount_all,
    wait_gone,
)
from truckctl.processes import alive
from truckctl.project import Project
from truckctl.remote import control_path, end_masters

Progress = Callable[[str], None]
BOOT_TIMEOUT_S = 120
STOP_GRACE_S = 3.0


def _quiet(_: str) -> None:
    return None


# ---- up --------------------------------------------------------------------------------------

def up(project: Project, stage_name: str, progress: Progress = _quiet, keep_node_faults: bool = False
       ) -> JsonObject:
    """Build the stage's lab, or reuse it when it is healthy (a dead apt cache is restarted).

    keep_node_faults: reuse a complete lab whose infrastructure (bridges, stand-in) is up even when
    truck nodes are down or cut off, and name them in `down_nodes`: `truckctl up` reports those as
    unreachable, as it would on real trucks, instead of rebuilding the lab under them. Otherwise
    an unhealthy lab is torn down and rebuilt.
    """
    require_root("up")
    refuse_outside(project.state_dir, "up")
    started = time.monotonic()
    stage = load_stage(project, stage_name)
    paths = LabPaths(project.state_dir)
    plan = plan_lab(stage, naming.lab_id(project.state_dir))
    with st.locked(project.state_dir):
        existing = st.load(project.state_dir)
        own = {r.name for r in existing.of_kind(st.LINK)} if existing else set()
        check_host_routes(plan, network.host_routes(), own, registry.other_labs(plan.lab_id))
        if existing is not None:
            if existing.stage != stage_name:
                return _move(existing, plan, paths, progress, started)
            if existing.complete and existing.fingerprint == plan.fingerprint() and _infrastructure_up(existing):
                restarted = _ensure_apt_cache(existing, paths, progress)
                down_nodes = _down_nodes(existing, paths)
                if not down_nodes or keep_node_faults:
                    return {**_summary(existing, paths, reused=True, seconds=time.monotonic() - started, boot=[]),
                            "down_nodes": down_nodes, "restarted": restarted}
            progress("a half-built, unhealthy or changed lab exists: tearing it down first")
            _teardown(existing, progress)
        require_tools(with_build=not rootfs.base_path().is_dir())
        state = st.LabState(plan.lab_id, stage_name, plan, plan.fingerprint(), path=st.state_file(project.state_dir))
        state.save()
        state.record(st.RUNFILE, str(registry.entry(plan.lab_id)))
        registry.register(plan.lab_id, project.root)
        boot = _build(state, plan, paths, progress)
        state.complete = True
        state.save()
        return _summary(state, paths, reused=False, seconds=time.monotonic() - started, boot=boot)


def _move(existing: st.LabState, plan: LabPlan, paths: LabPaths, progress: Progress, started: float
          ) -> JsonObject:
    """`up` of another stage on a running lab: the daily move (move.py), never a rebuild that would
    throw away what the stand-in received."""
    from truckctl.lab import move

    if not (existing.complete and existing.fingerprint == existing.plan.fingerprint()
            and _infrastructure_up(existing)):
        raise TruckctlError.single(
            "lab-other-stage", f"a lab for {existing.stage} is up but is half-built, unhealthy or was built by "
            f"another truckctl version, so it cannot move to {plan.stage}: run `truckctl lab down` first")
    moved = move.apply_move(existing, plan, paths, progress)
    restarted = _ensure_apt_cache(existing, paths, progress)
    return {**_summary(existing, paths, reused=True, seconds=time.monotonic() - started, boot=moved["boot"]),
            "down_nodes": _down_nodes(existing, paths), "restarted": restarted + moved["restarted"],
            "moved": moved}


def _build(state: st.LabState, plan: LabPlan, paths: LabPaths, progress: Progress) -> list[JsonObject]:
    roots = cgroup_roots()
    if not roots:
        raise TruckctlError.single("lab-cgroups", "no usable cgroup hierarchy under /sys/fs/cgroup")
    _identities(plan, paths)
    if not NSPAWN_RUNTIME.is_dir() or str(NSPAWN_RUNTIME) not in mount_points():
        # /run is on disk here and nspawn refuses to clean it otherwise; shared if someone mounted it already.
        state.record(st.TMPFS, str(NSPAWN_RUNTIME))
        NSPAWN_RUNTIME.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(NSPAWN_RUNTIME)], what="mount nspawn tmpfs")

    progress("networks: one bridge per truck LAN and the lab uplink")
    for truck in plan.trucks:
        prefix = int(truck.cidr.split("/")[1])
        network.make_bridge(state, truck.bridge, truck.host_address, prefix)
    network.make_bridge(state, plan.uplink.bridge, plan.uplink.host_address, int(plan.uplink.cidr.split("/")[1]))

    acng_cgroup = naming.cgroup(plan.lab_id, "apt-cacher-ng")
    state.record(st.CGROUP, acng_cgroup, roots=[str(r) for r in roots])
    aptcache.start(state, paths.acng, plan.host_addresses(), acng_cgroup, make_cgroup(acng_cgroup, roots))

    build_cgroup = naming.cgroup(plan.lab_id, "build")
    state.record(st.CGROUP, build_cgroup, roots=[str(r) for r in roots])
    build_cgroups = make_cgroup(build_cgroup, roots)
    base = rootfs.ensure_base(state, build_cgroups, progress)
    layer = rootfs.ensure_standin_layer(state, base, aptcache.proxy_url(plan.uplink.host_address),
                                        naming.machine(plan.lab_id, "build"), build_cgroups, progress)

    raised_from = ensure_inotify_instances(len(plan.nodes))
    if raised_from is not None:
        progress(f"raised fs.inotify.max_user_instances from {raised_from} (every node's systemd shares root's)")
    progress(f"starting {len(plan.nodes)} nodes")
    authorized = paths.ssh_key.with_name("id_ed25519.pub").read_text().strip()
    pki = LabPki(paths.pki)
    for item in plan.nodes:
        network.make_node_network(state, plan, item)
        lowers = [layer, base] if item.is_standin else [base]
        merged = node.mount_overlay(state, paths.root, item, lowers)
        node.write_identity(merged, plan, item, paths.host_key(item.name), authorized)
        if item.is_standin:
            standin.write_files(merged, plan, pki)
        node.launch(state, paths.root, item, merged, roots)

    deadline = time.monotonic() + BOOT_TIMEOUT_S
    conn = connection_for(paths)
    with ThreadPoolExecutor(max_workers=len(plan.nodes)) as pool:
        tls = standin.operator_tls(pki)
        boot = list(pool.map(lambda n: wait_ready(n, conn, plan, deadline, tls), plan.nodes))
    late = [b for b in boot if not b["ready"]]
    if late:
        raise TruckctlError(
            [Problem("lab-boot", f"node {b['node']} is not ready (systemd: {b['systemd']}); its console log is "
                     f"{node.node_dir(paths.root, next(n for n in plan.nodes if n.name == b['node']))}/console.log")
             for b in late] + [Problem("lab-boot", "the half-built lab is left for inspection: "
                                                   "`truckctl lab down` removes it")])
    progress("all nodes ready")
    return boot


def _identities(plan: LabPlan, paths: LabPaths) -> None:
    """The lab's login key, each node's host key + known_hosts, and the PKI (no side effect on the host)."""
    ensure_keypair(paths.ssh_key, "truckctl-lab")
    entries = []
    for item in plan.nodes:
        public = ensure_keypair(paths.host_key(item.name), f"root@{item.name}")
        names = [item.name, item.address] + ([item.uplink_address] if item.uplink_address else [])
        entries.append((names, public))
    write_known_hosts(paths.known_hosts, entries)
    pki = LabPki(paths.pki)
    pki.ensure_ca()
    standin.issue_certificates(pki, plan)
    pki.wireguard_public_key()


def _supervisor_alive(state: st.LabState, name: str) -> bool:
    proc = next((r for r in state.of_kind(st.PROCESS) if r.name == name), None)
    return proc is not None and alive(proc.data["pid"], proc.data.get("start"))


def _infrastructure_up(state: st.LabState) -> bool:
    """What the lab itself provides: its bridges and the cloud stand-in (node and broker)."""
    return (all(network.link_exists(b) for b in state.plan.bridges())
            and _supervisor_alive(state, state.plan.standin.name)
            and port_open(state.plan.uplink.standin_address, STANDIN_MQTT_PORT))


def _down_nodes(state: st.LabState, paths: LabPaths) -> list[str]:
    """Truck nodes that are switched off (supervisor gone) or do not answer SSH (e.g. link down)."""
    conn = connection_for(paths)
    nodes = state.plan.truck_nodes
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        answers = list(pool.map(lambda n: _supervisor_alive(state, n.name) and ssh_answers(n, conn), nodes))
    return [n.name for n, ok in zip(nodes, answers, strict=True) if not ok]


def _ensure_apt_cache(state: st.LabState, paths: LabPaths, progress: Progress) -> list[str]:
    """The apt cache is the lab's stand-in for the Debian mirror: restart it if it died."""
    if _supervisor_alive(state, "apt-cacher-ng"):
        return []
    progress("the apt cache is not running: restarting it")
    rel = naming.cgroup(state.plan.lab_id, "apt-cacher-ng")
    roots = cgroup_roots()
    kill_cgroup(rel, roots)  # whatever is left of the old one
    aptcache.start(state, paths.acng, state.plan.host_addresses(), rel, make_cgroup(rel, roots))
    return ["apt-cacher-ng"]


def _summary(state: st.LabState, paths: LabPaths, *, reused: bool, seconds: float,
             boot: list[JsonObject]) -> JsonObject:
    plan = state.plan
    return {
        "stage": plan.stage, "lab_id": plan.lab_id, "reused": reused, "seconds": round(seconds, 1),
        "nodes": [_node_row(n) for n in plan.nodes],
        "boot": boot,
        "standin": {"address": plan.uplink.standin_address,
                    "mqtt": f"{plan.uplink.standin_address}:{STANDIN_MQTT_PORT}",
                    "http": f"https://{plan.uplink.standin_address}:{STANDIN_HTTP_PORT}",
                    "http_access": "client certificates only: each truck's (its own data), truckctl's (all)"},
        "ssh": {"user": USER, "private_key": str(paths.ssh_key), "known_hosts": str(paths.known_hosts)},
    }


def _node_row(n: node.NodePlan) -> JsonObject:
    return {"name": n.name, "truck": n.truck, "role": n.role, "address": n.address,
            "uplink_address": n.uplink_address}


# ---- down ------------------------------------------------------------------------------------

def down(project: Project, progress: Progress = _quiet) -> JsonObject:
    require_root("down")
    refuse_outside(project.state_dir, "down")
    started = time.monotonic()
    with st.locked(project.state_dir):
        state = st.load(project.state_dir)
        if state is None:
            return {"was_up": False, "stage": None, "removed": {}, "seconds": 0.0}
        state.path = st.state_file(project.state_dir)
        end_masters(control_path(project.state_dir))  # this operator's lasting SSH connections to the nodes
        removed = _teardown(state, progress)
        return {"was_up": True, "stage": state.stage, "removed": removed,
                "seconds": round(time.monotonic() - started, 1)}


def _teardown(state: st.LabState, progress: Progress) -> dict[str, int]:
    """Undo every recorded resource, kind by kind; keeps the state of what could not be undone."""
    progress(f"tearing down the lab of {state.stage}")
    problems: list[Problem] = []
    removed: dict[str, int] = {}
    undo = {st.DRILL: _end_drills,
            st.PROCESS: _stop_processes, st.CGROUP: _remove_cgroups, st.RUNFILE: _remove_files, st.MOUNT: _unmount,
            st.SCRATCH: _remove_scratch, st.NETNS: _remove_netns, st.LINK: _remove_links,
            st.TMPFS: _unmount_tmpfs, st.DIR: _remove_dirs}
    for kind in st.TEARDOWN_ORDER:
        resources = state.of_kind(kind)
        if not resources:
            continue
        failed = undo[kind](resources, state)
        problems += failed
        left = {p.location for p in failed}
        state.resources = [r for r in state.resources if r.kind != kind or r.name in left]
        removed[kind] = len(resources) - len(left)
        state.save()
    _remove_runtime_leftovers(state.plan, state.parked)
    if problems:
        raise TruckctlError(problems, ExitCode.ERROR, {"removed": removed})
    if state.path is not None:
        state.path.unlink(missing_ok=True)
    return removed


def _end_drills(resources: list[st.Resource], state: st.LabState) -> list[Problem]:
    """Drills go with the nodes and links they lived in; what outlives the lab (the CA's CRL) is undone."""
    from truckctl.lab import faults

    if state.path is not None:
        pki = state.path.parent / "pki"
        faults.teardown(resources, lambda: LabPki(pki))
    return []


def _cgroup_roots_of(resource: st.Resource) -> list[Path]:
    return [Path(r) for r in resource.data.get("roots", [])] or cgroup_roots()


def _stop_processes(resources: list[st.Resource], state: st.LabState) -> list[Problem]:
    """SIGTERM the recorded processes (a supervisor stops its node cleanly), then SIGKILL whatever is
    left in the lab's cgroups: that also catches a node whose supervisor was killed (orphaned nspawn)."""
    recorded = [(int(r.data["pid"]), r.data.get("start")) for r in resources if "pid" in r.data]
    for pid, start in recorded:
        signal_process(pid, start, signal.SIGTERM)
    cgroups = [(r.name, _cgroup_roots_of(r)) for r in state.of_kind(st.CGROUP)]
    # Grace only where a recorded process was asked to stop (a node shutting down); builds are just killed.
    stopping = {r.data.get("cgroup") for r in resources}
    graceful = [(rel, roots) for rel, roots in cgroups if rel in stopping]
    for rel, roots in graceful:  # also a node whose supervisor was killed: its nspawn stops the guest cleanly
        for pid in cgroup_pids(rel, roots):
            if _comm(pid) == "systemd-nspawn":
                signal_process(pid, None, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and any(cgroup_pids(rel, roots) for rel, roots in graceful):
        time.sleep(0.05)
    for rel, roots in cgroups:
        kill_cgroup(rel, roots)
    for pid, start in recorded:
        signal_process(pid, start, signal.SIGKILL)  # a recorded process outside its cgroup, if ever
    wait_gone(recorded, timeout=3)
    return [Problem("lab-cleanup", f"process {pid} is still running", r.name)
            for r in resources if "pid" in r.data for pid in [int(r.data["pid"])] if alive(pid, r.data.get("start"))]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _remove_cgroups(resources: list[st.Resource], state: st.LabState) -> list[Problem]:
    problems = []
    for resource in resources:
        roots = _cgroup_roots_of(resource)
        kill_cgroup(resource.name, roots)
        left = remove_cgroup(resource.name, roots)
        if left:
            problems.append(Problem("lab-cleanup", f"cgroup {left[0]} could not be removed", resource.name))
        remove_empty_parent(resource.name.split("/")[0], roots)
    return problems


def _remove_files(resources: list[st.Resource], state: st.LabState) -> list[Problem]:
    for resource in resources:
        Path(resource.name).unlink(missing_ok=True)
    return []


def _unmount(resources: list[st.Resource], state: st.LabState) -> list[Problem]:
    problems = []
    for resource in resources:
        if unmount_all(Path(resource.name)):
            problems.append(Problem("lab-cleanup", f"{resource.name} is still mounted", resource.name))
    return problems


def _remove_scratch(resources: list[st.Resource], state: st.LabState) -> list[Problem]:
    problems = []
    for resource in resources:
        path = Path(resource.name)
        if not path.name.endswith(".partial"):  # only build directories, never a finished cache
            continue
        try:
            unmount_all(path)
            remove_tree(path)
        except TruckctlError as exc:
            problems.append(Problem("lab-cleanup", str(exc), resource.name))
    return problems


def _remove_netns(resources: list[st.Resource], state: st.LabState) -> list[Problem]:
    problems = []
    for resource in resources:
        try:
            network.delete_netns(resource.name)
        except TruckctlError as exc:
            problems.append(Problem("lab-cleanup", str(exc), resource.name))
    return problems


def _remove_links(resources: list[st.Resource], state: st.LabState) -> list[Problem]:
    for resource in resources:
        network.delete_link(resource.name)
    return [Problem("lab-cleanup", f"link {r.name} still exists", r.name)
            for r in resources if network.link_exists(r.name)]


def _unmount_tmpfs(resources: list[st.Resource], state: st.LabState) -> list[Problem]:
    """The nspawn tmpfs may be shared with nodes this lab did not start: then it stays."""
    if _other_nspawn_running():
        return []
    return _unmount(resources, state)


def _other_nspawn_running() -> bool:
    return any(_comm(int(p.name)) == "systemd-nspawn" for p in Path("/proc").glob("[0-9]*"))


def _remove_dirs(resources: list[st.Resource], state: st.LabState) -> list[Problem]:
    problems = []
    for resource in resources:
        try:
            remove_tree(Path(resource.name))
        except TruckctlError as exc:
            problems.append(Problem("lab-cleanup", str(exc), resource.name))
    return problems


def _remove_runtime_leftovers(plan: LabPlan, parked: list[node.NodePlan]) -> None:
    """nspawn keys a few runtime directories by machine name; a killed nspawn leaves them behind."""
    if not NSPAWN_RUNTIME.is_dir():
        return
    machines = {n.machine for n in [*plan.nodes, *parked]} | {naming.machine(plan.lab_id, "build")}
    for sub in NSPAWN_RUNTIME.iterdir():
        for machine in machines:
            leftover = sub / machine
            if not leftover.exists() or unmount_all(leftover):
                continue
            if leftover.is_dir():
                remove_tree(leftover)
            else:
                leftover.unlink(missing_ok=True)


# ---- node power: a simulated node switched off, and on again ----------------------------------

NODE_STOP_TIMEOUT_S = 30.0


def _running_truck_node(project: Project, name: str) -> tuple[st.LabState, node.NodePlan]:
    state = st.load(project.state_dir)
    if state is None or not state.complete:
        raise TruckctlError.single("lab-not-up", "no complete lab is up: run `truckctl lab up STAGE` first")
    item = next((n for n in state.plan.truck_nodes if n.name == name), None)
    if item is None:
        known = ", ".join(n.name for n in state.plan.truck_nodes)
        raise TruckctlError.single("lab-unknown-node", f"no truck node {name!r} in the lab (nodes: {known})",
                                   exit_code=ExitCode.USAGE)
    return state, item


def stop_node(project: Project, name: str) -> JsonObject:
    """Switch a truck node off: its supervisor stops the guest cleanly (as a power button would).
    Its overlay, namespace and links stay, so `start_node` boots it again with everything it had."""
    require_root("stop_node")
    started = time.monotonic()
    with st.locked(project.state_dir):
        state, item = _running_truck_node(project, name)
        proc = next(r for r in state.of_kind(st.PROCESS) if r.name == name)
        pid, start = int(proc.data["pid"]), proc.data.get("start")
        signal_process(pid, start, signal.SIGTERM)
        clean = wait_gone([(pid, start)], NODE_STOP_TIMEOUT_S)
        kill_cgroup(item.cgroup, cgroup_roots())  # anything the stop left (or all of it, if it hung)
    return {"node": name, "stopped": True, "clean": clean, "seconds": round(time.monotonic() - started, 1)}


def start_node(project: Project, name: str, timeout_s: float = BOOT_TIMEOUT_S) -> JsonObject:
    """Switch a stopped truck node on again and wait until it is ready (SSH, systemd booted)."""
    require_root("start_node")
    started = time.monotonic()
    paths = LabPaths(project.state_dir)
    with st.locked(project.state_dir):
        state, item = _running_truck_node(project, name)
        if _supervisor_alive(state, name):
            return {"node": name, "started": False, "note": "already running"}
        roots = cgroup_roots()
        kill_cgroup(item.cgroup, roots)
        merged = node.merged_dir(paths.root, item)
        image = merged.stat()
        (NSPAWN_RUNTIME / "locks" / f"inode-{image.st_dev}:{image.st_ino}").unlink(missing_ok=True)
        node.launch(state, paths.root, item, merged, roots)
    boot = wait_ready(item, connection_for(paths), state.plan, time.monotonic() + timeout_s)
    if not boot["ready"]:
        raise TruckctlError.single("lab-boot", f"node {name} did not come back (systemd: {boot['systemd']}); its "
                                   f"console log is {node.node_dir(paths.root, item)}/console.log")
    return {"node": name, "started": True, "seconds": round(time.monotonic() - started, 1)}


# ---- status ----------------------------------------------------------------------------------

def status(project: Project) -> JsonObject:
    require_root("status")
    state = st.load(project.state_dir)
    if state is None:
        return {"up": False, "stage": None, "nodes": []}
    paths = LabPaths(project.state_dir)
    plan = state.plan
    conn = connection_for(paths)
    processes = {r.name: r for r in state.of_kind(st.PROCESS)}
    roots = cgroup_roots()

    def one(n: node.NodePlan) -> JsonObject:
        proc = processes.get(n.name)
        systemd = systemd_state(n, roots)
        row = {**_node_row(n), "supervisor": bool(proc and alive(proc.data["pid"], proc.data.get("start"))),
               "systemd": systemd, "systemd_running": systemd in READY, "ssh": ssh_answers(n, conn)}
        if n.uplink_veth:
            row["uplink"] = "up" if network.link_is_up(n.uplink_veth) else "down"
        return row

    with ThreadPoolExecutor(max_workers=len(plan.nodes)) as pool:
        rows = list(pool.map(one, plan.nodes))
    acng = processes.get("apt-cacher-ng")
    stand = next(r for r in rows if r["name"] == plan.standin.name)
    standin_info = {**stand, "mqtt_tls": port_open(plan.uplink.standin_address, STANDIN_MQTT_PORT),
                    "http": port_open(plan.uplink.standin_address, STANDIN_HTTP_PORT)}
    truck_rows = [r for r in rows if r["name"] != plan.standin.name]
    if standin_info["http"]:
        from truckctl.lab.move import stage_counts

        standin_info["stages"] = stage_counts(plan, paths)  # what each race day brought in, per truck
    healthy = state.complete and all(r["supervisor"] and r["systemd_running"] and r["ssh"] for r in rows) and \
        standin_info["mqtt_tls"] and standin_info["http"]
    return {
        "up": True, "stage": state.stage, "lab_id": plan.lab_id, "complete": state.complete, "healthy": healthy,
        "nodes": truck_rows, "standin": standin_info,
        # switched off: their trucks are not in this stage's tech zone (a later stage brings them back)
        "parked": [{**_node_row(n), "supervisor": _supervisor_alive(state, n.name)} for n in state.parked],
        "apt_cache": {"running": bool(acng and alive(acng.data["pid"], acng.data.get("start"))),
                      "proxies": [aptcache.proxy_url(a) for a in plan.host_addresses()]},
        "ssh": {"user": USER, "private_key": str(paths.ssh_key), "known_hosts": str(paths.known_hosts)},
    }
