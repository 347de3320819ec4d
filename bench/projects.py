"""Throwaway truckctl projects for the lab benchmarks, and the stock-Ansible baseline.

Every lab benchmark runs on its OWN temporary project (a copy of inventory/ with its own networks,
its own state directory, playbooks/ and stacks/ symlinked to the repository's), never on the
repository's project, whose lab other people use. Networks are chosen so they overlap neither the
shipped example (10.31/10.32, uplink 100.64.10.0/24) nor the labs other engineers run on this
machine (10.41-10.62, uplinks 100.64.20-40): 10.7X.*.0/24 and uplinks 100.64.5X.0/24.

`TempProject.close()` always takes the lab down and removes the directory; `cleanup_all()` (run by
bench/run.py at exit, on SIGTERM and on Ctrl-C) does it for every project still open.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TRUCKCTL = str(BIN / "truckctl")
STAGE = "stage-1"
NODE_ROLES = ("gateway", "compute", "storage")
# Whatever runs ansible-playbook by hand inherits none of truckctl's tuning from the environment.
_STRIPPED_ENV_PREFIXES = ("ANSIBLE_", "TRUCKCTL_", "RUNNER_")

_open: list[TempProject] = []


class BenchError(RuntimeError):
    """A benchmark's command failed or did something it must not (e.g. a re-run that changed things)."""


def run_quiet(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv in its own process group, output captured. On a timeout or an interruption (Ctrl-C,
    SIGTERM turned into KeyboardInterrupt by run.py) the whole group (truckctl, ansible-playbook, its
    ssh children) gets SIGTERM, then SIGKILL after 20 s: nothing of ours keeps running."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException:
        _stop_group(proc)
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, None)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # the group we created for this child: its pid is the group id
        try:
            proc.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_ENV_PREFIXES)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra)
    return env


@dataclass
class TempProject:
    """A truckctl project in a temporary directory; `close()` takes its lab down and deletes it."""

    label: str
    root: Path
    nodes: int
    control_dir: Path = field(init=False)  # SSH ControlMaster sockets of this project's runs

    def __post_init__(self) -> None:
        self.control_dir = self.root / ".cp"
        self.control_dir.mkdir(mode=0o700, exist_ok=True)
        _open.append(self)

    def argv(self, *args: str) -> list[str]:
        return [TRUCKCTL, "-C", str(self.root), *args]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        # ANSIBLE_SSH_CONTROL_PATH_DIR is only where the SSH multiplexing sockets live (truckctl keeps its
        # ControlPersist setting): a directory per project lets the harness close them between samples.
        return clean_env(ANSIBLE_SSH_CONTROL_PATH_DIR=str(self.control_dir), **(extra or {}))

    def truckctl(self, *args: str, ok: tuple[int, ...] = (0,), timeout: float = 1800,
                 env: dict[str, str] | None = None, netns: str | None = None) -> dict[str, Any]:
        """Run `truckctl -C root ARGS --json` (in network namespace `netns` if given: the lab's outside
        operator); return its envelope, raise BenchError unless the exit code is ok."""
        prefix = ["ip", "netns", "exec", netns] if netns else []
        proc = run_quiet([*prefix, *self.argv(*args), "--json"], env=self.env(env), timeout=timeout)
        try:
            envelope: dict[str, Any] = json.loads(proc.stdout[proc.stdout.index("{"):]) if "{" in proc.stdout else {}
        except ValueError:
            envelope = {}
        if proc.returncode not in ok:
            errors = "; ".join(e.get("message", "") for e in envelope.get("errors", [])) or tail(proc.stdout)
            raise BenchError(f"truckctl {' '.join(args)} on {self.label}: exit {proc.returncode}: {errors}")
        return envelope

    def lab_up(self) -> None:
        self.truckctl("lab", "up", STAGE)

    def lab_down(self) -> None:
        self.truckctl("lab", "down")

    def converge(self, env: dict[str, str] | None = None, netns: str | None = None,
                 whole: bool = False, full: bool = False) -> dict[str, Any]:
        """`truckctl up stage-1 --tier truck` (lab, prechecks, lock, truck tier, smoke check), or with `whole`
        every tier (the cloud tier too: the lab's stand-in), with `full` site.yml whatever the fast path would
        say; the run's result."""
        args = (() if whole else ("--tier", "truck")) + (("--full",) if full else ())
        return dict(self.truckctl("up", STAGE, *args, env=env, netns=netns).get("result") or {})

    def lab_cpu(self) -> float:
        """CPU seconds used so far by the lab's nodes (their cgroup), 0 when no lab is up."""
        try:
            lab_id = json.loads((self.root / ".truckctl" / "lab" / "state.json").read_text())["plan"]["lab_id"]
        except (OSError, ValueError, KeyError, TypeError):
            return 0.0
        for base in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
            stat = base / f"truckctl-lab-{lab_id}" / "cpu.stat"
            try:
                fields = dict(line.split() for line in stat.read_text().splitlines() if line.strip())
                return int(fields["usage_usec"]) / 1e6
            except (OSError, ValueError, KeyError):
                continue
        return 0.0

    def close_ssh_masters(self) -> None:
        """End the SSH ControlMaster processes left by earlier runs (Ansible's, and those `status` keeps for
        the next one), so every sample starts cold."""
        from truckctl.remote import control_path, end_masters

        for directory in (control_path(self.root / ".truckctl"), self.control_dir):
            end_masters(directory)

    def close(self) -> None:
        """Take the lab down (retrying once) and remove the project. Never raises."""
        try:
            self.close_ssh_masters()
            for attempt in range(2 if (self.root / ".truckctl" / "lab").exists() else 0):
                try:
                    self.lab_down()
                    break
                except (BenchError, subprocess.TimeoutExpired) as exc:
                    print(f"warning: lab down of {self.label} failed (attempt {attempt + 1}): {exc}",
                          file=sys.stderr)
                    time.sleep(2)
            state = self.root / ".truckctl" / "lab" / "state.json"
            if state.exists() or mounted_under(self.root):  # keep it: else nobody could tear the rest down
                print(f"warning: the lab of {self.label} is not fully down: kept {self.root}; run "
                      f"`{TRUCKCTL} -C {self.root} lab down`", file=sys.stderr)
                return
            shutil.rmtree(self.root, ignore_errors=True)
        finally:
            with contextlib.suppress(ValueError):
                _open.remove(self)


def mounted_under(root: Path) -> bool:
    """Whether anything is still mounted inside `root` (never rmtree through a live mount)."""
    prefix = str(root.resolve()) + "/"
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return True
    return any(line.split()[1].startswith(prefix) for line in mounts if len(line.split()) > 1)


def cleanup_all() -> None:
    for project in list(reversed(_open)):
        project.close()


def _new_root(label: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"truckctl-bench-{label}-"))
    for name in ("playbooks", "stacks"):
        (root / name).symlink_to(REPO / name)
    return root


def stage1_clone(label: str, octet: int, uplink: int) -> TempProject:
    """The shipped example (all 21 stages, 2 trucks of 3 nodes) with its networks moved:
    10.31.* -> 10.<octet>.*, 10.32.* -> 10.<octet+1>.*, 10.33.* (truck-a's LAN of the day in
    stage-7 and stage-20) -> 10.<octet+2>.*, uplink 100.64.10.0/24 -> 100.64.<uplink>.0/24."""
    root = _new_root(label)
    shutil.copytree(REPO / "inventory", root / "inventory")
    moves = {"10.31.": f"10.{octet}.", "10.32.": f"10.{octet + 1}.", "10.33.": f"10.{octet + 2}.",
             "100.64.10.": f"100.64.{uplink}."}
    pattern = re.compile(r"(?<![\d.])(" + "|".join(re.escape(k) for k in moves) + ")")
    for path in (root / "inventory").rglob("*.yaml"):
        text = path.read_text()
        path.write_text(pattern.sub(lambda m: moves[m.group(1)], text))
    return TempProject(label, root, nodes=6)


def scaled(label: str, trucks: int, octet: int, uplink: int, per_truck: int = 3) -> TempProject:
    """A generated race: `trucks` trucks of `per_truck` nodes (gateway, compute, storage, then more compute
    nodes), stage-1 only, truck i's LAN 10.<octet>.<10 i>.0/24 and VLANs 10.<octet>.<10 i + 1..3>.0/24,
    uplink 100.64.<uplink>.0/24."""
    if not 1 <= trucks <= 24:
        raise ValueError("1 to 24 trucks")
    if not 3 <= per_truck <= 8:
        raise ValueError("3 to 8 nodes per truck")
    root = _new_root(label)
    race = yaml.safe_load((REPO / "inventory" / "race.yaml").read_text())
    stage = yaml.safe_load((REPO / "inventory" / "stages" / f"{STAGE}.yaml").read_text())
    names = [f"truck-{chr(ord('a') + i)}" for i in range(trucks)]
    roles = [*NODE_ROLES, *(["compute"] * (per_truck - len(NODE_ROLES)))]
    suffixes = ["gw", *(f"hv{j}" for j in range(1, per_truck))]
    race["trucks"] = []
    for i, name in enumerate(names, start=1):
        base = 10 * i
        race["trucks"].append({
            "name": name,
            "lan": f"10.{octet}.{base}.0/24",
            "vlans": [{"id": 100 + 10 * v, "name": vname, "cidr": f"10.{octet}.{base + v}.0/24"}
                      for v, vname in enumerate(("telemetry", "storage", "mgmt"), start=1)],
            "nodes": [{"name": f"{name}-{suffix}", "role": role, "address": f"10.{octet}.{base}.{11 + j}"}
                      for j, (suffix, role) in enumerate(zip(suffixes, roles, strict=True))],
        })
    race.setdefault("lab", {})["uplink_cidr"] = f"100.64.{uplink}.0/24"
    stage["tech_zone"]["trucks"] = names
    stage["tech_zone"].pop("networks", None)
    (root / "inventory" / "stages").mkdir(parents=True)
    (root / "inventory" / "race.yaml").write_text(yaml.safe_dump(race, sort_keys=False))
    (root / "inventory" / "stages" / f"{STAGE}.yaml").write_text(yaml.safe_dump(stage, sort_keys=False))
    return TempProject(label, root, nodes=per_truck * trucks)


# ---- stock Ansible: the same playbooks and inventory, ansible-playbook with its default configuration ----

@dataclass
class StockRun:
    """`ansible-playbook` run by hand against a project's lab: no ansible.cfg (ANSIBLE_CONFIG is an empty
    file), so default forks (5), fact gathering on (a copy of site.yml with `gather_facts: true` in its first play), no
    pipelining and the default SSH arguments; host-key checking on against the lab's known_hosts.

    The inventory, connection variables and extra vars are rendered by truckctl's own build_plan; the
    secret vars are vault-encrypted as truckctl does, with the password in a 0600 file removed by close().
    """

    project: TempProject
    dir: Path
    argv: list[str]
    env: dict[str, str]

    @classmethod
    def prepare(cls, project: TempProject, check: bool = False) -> StockRun:
        from truckctl.truck.vault import new_password, write_encrypted_vars

        plan, work = _rendered(project, "stock-", check)
        playbooks = REPO / "playbooks"
        for entry in playbooks.iterdir():  # roles/, library/ ... next to the playbook, as Ansible expects
            if entry.name not in ("ansible.cfg", plan.playbook):
                (work / entry.name).symlink_to(entry)
        site = (playbooks / plan.playbook).read_text()
        (work / plan.playbook).write_text(stock_playbook(site))
        (work / "empty.cfg").write_text("")
        password = new_password()
        pw_file = work / "vault-password"
        fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password)
        write_encrypted_vars(work / "secrets.vault", plan.secret_vars, password)
        argv = [str(BIN / "ansible-playbook"), "-i", "inventory.yml", "-e", "@extravars.yml",
                "-e", "@secrets.vault", "--vault-password-file", "vault-password", plan.playbook]
        if check:
            argv[1:1] = ["--check", "--diff"]
        env = clean_env(ANSIBLE_CONFIG=str(work / "empty.cfg"), ANSIBLE_NOCOLOR="1",
                        ANSIBLE_SSH_CONTROL_PATH_DIR=str(project.control_dir))
        return cls(project, work, argv, env)

    def run(self, expect_changes: bool | None = None) -> dict[str, int]:
        """Run the playbook; raise BenchError if it fails (or changes something when it must not)."""
        return run_playbook(self.argv, self.env, self.dir, f"stock ansible-playbook on {self.project.label}",
                            may_change=expect_changes is not False)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _rendered(project: TempProject, prefix: str, check: bool = False) -> tuple[Any, Path]:
    """truckctl's own run plan for the project's stage-1 and a private work directory for a hand-made run
    beside it, holding the plan's inventory.yml and extravars.yml (connection and extra vars)."""
    from truckctl.ansible_data import dump
    from truckctl.config.loader import load_stage
    from truckctl.lab import api as lab_api
    from truckctl.project import Project
    from truckctl.truck.plan import build_plan

    proj = Project(project.root)
    stage = load_stage(proj, STAGE)
    plan = build_plan(proj.playbooks_dir, stage, lab_api.cloud_outputs(proj, stage),
                      lab_api.connection(proj), "lab", check=check)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=project.root))
    os.chmod(work, 0o700)
    # written as truckctl writes them (every string !unsafe): a hand-made run must not template config text
    (work / "inventory.yml").write_text(dump(plan.inventory))
    (work / "extravars.yml").write_text(dump(plan.extravars))
    return plan, work


def run_playbook(argv: list[str], env: dict[str, str], cwd: Path, what: str, may_change: bool) -> dict[str, int]:
    """Run ansible-playbook; its PLAY RECAP totals. Raises BenchError if it fails, or changes something
    when it may not (a re-run on a converged lab that is not idempotent)."""
    proc = run_quiet(argv, env=env, cwd=cwd, timeout=3600)
    recap = parse_recap(proc.stdout)
    if proc.returncode != 0 or not recap:
        raise BenchError(f"{what}: exit {proc.returncode}:\n{tail(proc.stdout)}")
    if not may_change and recap.get("changed", 0):
        raise BenchError(f"{what} changed {recap['changed']} task(s) on a converged lab: not idempotent\n"
                         f"{tail(proc.stdout, 40)}")
    return recap


# ---- truckctl's modules against Ansible's own, over the roles' real files and units -------------------

@dataclass
class ModuleCostRun:
    """The files and units the roles manage, done again on a converged lab with `ansible-playbook` two ways:
    through truck_files, one run per role task as the roles call it (module_cost/custom.yml),
    or through Ansible's own file, copy, find and systemd_service, one task result per path or unit
    (module_cost/stock.yml). Both use truckctl's ansible.cfg and Mitogen strategy (truck.runner.mitogen_env),
    so the modules are the only difference. What each node gets is read from the last converge's artifacts:
    the modules' arguments (paths, contents, modes, units; never a secret: secrets go through
    truck_secret_file, left out of both)."""

    project: TempProject
    dir: Path
    env: dict[str, str]
    argv: list[str]
    paths: dict[str, int]  # per node: how many paths and units it manages (the report's note)

    @classmethod
    def prepare(cls, project: TempProject) -> ModuleCostRun:
        from truckctl.ansible_data import dump
        from truckctl.truck.runner import mitogen_env

        calls = module_calls(newest_artifacts(project))
        if not calls:
            raise BenchError(f"no truck_files results in {project.label}'s last converge")
        per_node = {host: module_cost_vars(found) for host, found in calls.items()}
        _, work = _rendered(project, "module-cost-")
        (work / "module_cost.yml").write_text(dump({"module_cost": per_node}))
        argv = [str(BIN / "ansible-playbook"), "-i", "inventory.yml", "-e", "@extravars.yml",
                "-e", "@module_cost.yml", "--forks", str(project.nodes)]
        env = clean_env(ANSIBLE_CONFIG=str(REPO / "playbooks" / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                        ANSIBLE_LIBRARY=str(REPO / "playbooks" / "library"),
                        ANSIBLE_SSH_CONTROL_PATH_DIR=str(project.control_dir), **mitogen_env())
        if "ANSIBLE_STRATEGY" not in env:
            raise BenchError("Mitogen is not installed: the comparison is meant under truckctl's strategy")
        paths = {host: len(v["dirs"]) + len(v["copies"]) + len(v["links"]) + len(v["absent"]) + len(v["units"])
                 for host, v in per_node.items()}
        return cls(project, work, env, argv, paths)

    def run(self, variant: str) -> dict[str, int]:
        """Run one variant (custom or stock); raise BenchError if it fails or changes anything (then its
        arguments would not match the roles')."""
        return run_playbook([*self.argv, str(REPO / "bench" / "module_cost" / f"{variant}.yml")], self.env,
                            self.dir, f"module-cost {variant} on {self.project.label}", may_change=False)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def newest_artifacts(project: TempProject) -> Path:
    runs = sorted((project.root / ".truckctl" / "truck" / "artifacts").glob("*/job_events"))
    if not runs:
        raise BenchError(f"{project.label} has no truck-tier artifacts: converge it first")
    return runs[-1]


def slowest_task(job_events: Path, action: str) -> float | None:
    """The longest a task of this action took on any node in an ansible-runner run (None: it did not run)."""
    durations = [float(data["duration"]) for data in _finished(job_events)
                 if data.get("task_action") == action and isinstance(data.get("duration"), int | float)]
    return max(durations, default=None)


def _finished(job_events: Path) -> list[dict[str, Any]]:
    """The event data of every task result on a node (ok, changed or not) of a run, in order."""
    found = []
    for path in sorted(job_events.glob("*.json"), key=lambda p: int(p.name.split("-", 1)[0])):
        event = json.loads(path.read_text())
        if event.get("event") == "runner_on_ok" and isinstance(event.get("event_data"), dict):
            found.append(event["event_data"])
    return found


def module_calls(job_events: Path) -> dict[str, list[dict[str, Any]]]:
    """Per node, the arguments of every truck_files run of an ansible-runner run."""
    calls: dict[str, list[dict[str, Any]]] = {}
    for data in _finished(job_events):
        if data.get("task_action") != "truck_files":
            continue
        arguments = ((data.get("res") or {}).get("invocation") or {}).get("module_args")
        if isinstance(arguments, dict):
            calls.setdefault(data["host"], []).append(arguments)
    return calls


def module_cost_vars(found: list[dict[str, Any]]) -> dict[str, Any]:
    """One node's work for both variants: the module calls as they were, and the same work spelled per
    path and per unit, with truck_files' defaults (root:root, 0755 directories, 0644 files) made explicit."""
    def owned(spec: dict[str, Any], mode: str) -> dict[str, Any]:
        return {**spec, "owner": spec.get("owner") or "root", "group": spec.get("group") or "root",
                "mode": str(spec.get("mode") or mode)}

    file_calls = [{"dirs": c.get("dirs") or [], "files": c.get("files") or [], "prune": c.get("prune") or [],
                   "services": c.get("services") or []} for c in found]
    files = [f for c in file_calls for f in c["files"]]
    present = [f for f in files if f.get("state", "present") != "absent"]
    return {
        "file_calls": file_calls,
        "dirs": [owned(d, "0755") for c in file_calls for d in c["dirs"]],
        "copies": [{k: v for k, v in owned(f, "0644").items() if v is not None}
                   for f in present if not f.get("link_to")],
        "links": [f for f in present if f.get("link_to")],
        "absent": [f for f in files if f.get("state") == "absent"],
        "prunes": [{**p, "wanted": [f["path"] for f in c["files"] if f.get("state", "present") != "absent"]}
                   for c in file_calls for p in c["prune"]],
        "units": [n for c in file_calls for n in c["services"]],
    }


def stock_playbook(site: str) -> str:
    """site.yml with fact gathering back to Ansible's default (on) in its first play. The later plays keep
    `gather_facts: false`: the facts gathered first last for the whole run, and gathering them again in each
    of site.yml's plays would bill the stock run for how truckctl splits its playbook."""
    stock, count = re.subn(r"(?m)^(\s*)gather_facts:\s*(false|no|False)\s*(#.*)?$", r"\1gather_facts: true", site,
                           count=1)
    if count == 0:
        raise BenchError("site.yml has no `gather_facts: false` to turn back to Ansible's default")
    return stock


def parse_recap(output: str) -> dict[str, int]:
    """Totals of the PLAY RECAP (ok, changed, unreachable, failed...) over every host."""
    totals: dict[str, int] = {}
    recap = output.rsplit("PLAY RECAP", 1)
    if len(recap) < 2:
        return totals
    for key, value in re.findall(r"\b(ok|changed|unreachable|failed|skipped|rescued|ignored)=(\d+)", recap[1]):
        totals[key] = totals.get(key, 0) + int(value)
    return totals
