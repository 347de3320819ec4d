"""The fast path: a stage known clean is checked with one SSH call per node instead of a run of site.yml.

A run of site.yml costs about 8 s on stage-1 (check mode for drift, a converge for `up`), nearly all of it
Ansible's controller (a worker per node and task, templating, Mitogen's bootstrap). The question drift asks
most often, on a schedule, and the one an idempotent `up` answers by changing nothing, is "did anything move
since the last clean run?". Each node answers it in one SSH call: a fingerprint of everything site.yml's
tasks read there (fingerprint_node.py: the managed paths, units, accounts and packages) plus
truck_live_state's own measurement of the live state. When the run's inputs are the ones of the last clean
run and every node's fingerprint is the one it had then, with no live-state item, site.yml would do what
it did then: find nothing (check mode), change nothing (a converge).

Sound by construction, conservative by design:
- A baseline is recorded only by a full run (a check or a converge) that found or changed nothing on every
  node of the stage and held nothing back, with the fingerprints taken just before and just after it equal
  (a change during the run never becomes the baseline), and only when every task of the run is of a kind
  the fingerprint covers (`spec_from_run`).
- The inputs key covers the rendered inventory, extra vars and secrets, every file under playbooks/ and
  truckctl's version: a changed configuration, cloud output, key or role means the full run.
- Anything else (no baseline, another fingerprint, a live-state item, a node that does not answer, a
  --limit, a node left out, --full) runs site.yml, which names the drift or puts it back; fingerprints are
  a hash, never shown or logged.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from truckctl import __version__
from truckctl.jsondoc import JsonObject
from truckctl.private_file import write_private
from truckctl.remote import Connection, explain_ssh_failure, ssh_argv
from truckctl.truck.events import HostStats, TruckRunResult
from truckctl.truck.plan import HOLD_CUTS_VAR, RunPlan

if TYPE_CHECKING:
    from truckctl.config.model import Stage

NODE_SCRIPT = Path(__file__).with_name("fingerprint_node.py")
PACKAGE = Path(__file__).parent.parent  # truckctl/
LIVE_MODULE = "library/truck_live_state.py"
ANSWER_TIMEOUT_S = 30.0
# Task actions whose reads the fingerprint covers, beyond the files and units of truck_files: the
# accounts (user), the secret files (truck_secret_file, their path), the live state (truck_live_state).
# assert reads nothing on the node; apt only runs when a package is missing (then it changes). Handlers
# do not count: they run only after a change, and a check with a change records no baseline.
COVERED_ACTIONS = {"truck_files", "truck_secret_file", "truck_live_state", "user", "apt", "assert"}
# The roles' commands, each covered: common's dpkg-query (dpkg's status), vpn's key (its `creates` path),
# hardening's "ruleset loaded since /etc/nftables.conf changed" (nftables' start time and the file's mtime,
# and the live ruleset itself through truck_live_state).
COMMAND_ROLES = {"common", "hardening", "vpn"}


@dataclass(frozen=True)
class NodeSpec:
    """What one node's fingerprint covers, read from the module arguments of a truck run."""

    paths: tuple[str, ...]
    listed: tuple[str, ...]  # directories whose entry names count (truck_files' prune)
    deep: tuple[str, ...]  # directories whose every entry counts: a role's, where its secret file lives
    units: tuple[str, ...]
    users: tuple[str, ...]
    live_args: JsonObject

    def as_dict(self) -> JsonObject:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: JsonObject) -> NodeSpec:
        def strings(key: str) -> tuple[str, ...]:
            return tuple(str(v) for v in data[key])

        return cls(strings("paths"), strings("listed"), strings("deep"), strings("units"), strings("users"),
                   dict(data["live_args"]))


@dataclass(frozen=True)
class FastAnswer:
    """A node's answer: its fingerprint and live-state items (None: it did not answer)."""

    fingerprint: str | None
    live: list[JsonObject] | None
    detail: str = ""


def spec_from_run(job_events: Path, hosts: list[str]) -> dict[str, NodeSpec] | None:
    """Each node's spec from a finished run's events; None when a task's reads are not covered, a covered
    task's arguments are not in its result, or a node lacks its live-state check (then no fast path)."""
    try:
        return _spec_from_events(job_events, hosts)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # rotated away, cut short: no fast path
        return None


def _spec_from_events(job_events: Path, hosts: list[str]) -> dict[str, NodeSpec] | None:
    found: dict[str, dict[str, list[str]]] = {h: {"paths": [], "listed": [], "units": [], "users": []} for h in hosts}
    role_dirs: dict[tuple[str, str], list[str]] = {}  # (host, role) -> its truck_files directories
    secret_roles: set[tuple[str, str]] = set()
    live: dict[str, JsonObject] = {}
    for path in sorted(job_events.glob("*.json"), key=lambda p: int(p.name.split("-", 1)[0])):
        event = json.loads(path.read_text())
        data = event.get("event_data") or {}
        if event.get("event") not in ("runner_on_ok", "runner_on_skipped") or data.get("host") not in found \
                or "/handlers/" in str(data.get("task_path", "")):
            continue
        host, role = str(data["host"]), str(data.get("role", ""))
        action = str(data.get("resolved_action") or data.get("task_action") or "").rsplit(".", 1)[-1]
        if action in ("command", "shell"):
            if role not in COMMAND_ROLES:
                return None
        elif action not in COVERED_ACTIONS and action != "meta":
            return None
        res = data.get("res") or {}
        if event["event"] == "runner_on_skipped" or action in ("meta", "assert"):
            continue
        if action == "truck_secret_file" and res.get("censored"):  # no_log: its path is not in the result;
            secret_roles.add((host, role))  # the role keeps it in a directory of its own (test_fastcheck)
            continue
        invocations = _invocations(res)
        if not invocations:
            return None  # a covered task whose reads cannot be known
        spec = found[host]
        for args in invocations:
            if action == "truck_files":
                dirs = [str(d["path"]) for d in args.get("dirs") or []]
                role_dirs.setdefault((host, role), []).extend(dirs)
                spec["paths"] += dirs + [str(f["path"]) for f in args.get("files") or []]
                spec["listed"] += [str(p["path"]) for p in args.get("prune") or []]
                spec["units"] += [str(u) for u in args.get("services") or []]
            elif action == "truck_secret_file":
                spec["paths"] += [str(args["path"]), str(Path(str(args["path"])).parent)]
            elif action in ("command", "shell") and args.get("creates"):
                spec["paths"].append(str(args["creates"]))
            elif action == "user":
                spec["users"].append(str(args["name"]))
            elif action == "truck_live_state":  # measured only: whether fixes are held back does not count
                live[host] = {name: value for name, value in args.items() if name != "hold_cuts"}
    if set(live) != set(hosts) or any(not role_dirs.get(key) for key in secret_roles):
        return None
    def deep(host: str) -> tuple[str, ...]:
        return tuple(d for key, dirs in role_dirs.items() if key[0] == host and key in secret_roles for d in dirs)

    nftables = ["nftables"]  # hardening's ruleset check reads its start time
    return {host: NodeSpec(tuple(s["paths"]), tuple(s["listed"]), deep(host), tuple(sorted(set(s["units"] + nftables))),
                           tuple(s["users"]), live[host]) for host, s in found.items()}


def _invocations(res: JsonObject) -> list[JsonObject]:
    """The module arguments of a result, one per loop item for a loop."""
    results = res.get("results")
    items = results if isinstance(results, list) else [res]
    return [args for item in items if isinstance(item, dict)
            and isinstance(args := (item.get("invocation") or {}).get("module_args"), dict)]


def inputs_key(plan: RunPlan) -> str:
    """A hash of everything the run's outcome depends on besides the nodes: the rendered inventory, extra
    vars and secrets, every file under playbooks/, the versions of truckctl, ansible-core and Mitogen, and
    truckctl's own code (how a run's results are read decides what a clean run was). Check mode, --limit
    and holding back what cuts telemetry (a converge's choice, not the configuration) are left out."""
    extravars = {name: value for name, value in plan.extravars.items() if name != HOLD_CUTS_VAR}
    digest = hashlib.sha256()
    digest.update(json.dumps([__version__, _version("ansible-core"), _version("mitogen"), plan.inventory, extravars,
                              plan.secret_vars], sort_keys=True, default=str).encode())
    files = [p for p in plan.project_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for path in sorted(files):
        digest.update(str(path.relative_to(plan.project_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    for own in sorted(PACKAGE.rglob("*.py")):
        digest.update(own.read_bytes())
    return digest.hexdigest()


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


class Baselines:
    """The stage's recorded spec (any truck run that succeeded) and baseline fingerprints (a clean full run), under
    the state dir (0600: the specs hold the live-state arguments, the roles' rendered settings)."""

    def __init__(self, state_dir: Path, stage: str) -> None:
        self.path = state_dir / "truck" / "fastcheck" / f"{stage}.json"

    def load(self, key: str) -> tuple[dict[str, NodeSpec], dict[str, str] | None] | None:
        try:
            data = json.loads(self.path.read_text())
            if data.get("key") != key:
                return None
            specs = {host: NodeSpec.from_dict(spec) for host, spec in data["specs"].items()}
            fingerprints = data.get("fingerprints")
            return specs, ({str(h): str(f) for h, f in fingerprints.items()} if isinstance(fingerprints, dict)
                           else None)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, key: str, specs: dict[str, NodeSpec], fingerprints: dict[str, str] | None = None) -> None:
        data = {"key": key, "specs": {h: s.as_dict() for h, s in specs.items()}, "fingerprints": fingerprints}
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.path, json.dumps(data, sort_keys=True).encode())

    def forget(self) -> None:
        with contextlib.suppress(OSError):  # an unwritable state dir: nothing could be recorded either
            self.path.unlink(missing_ok=True)


def ask_nodes(connection: Connection, addresses: dict[str, str], specs: dict[str, NodeSpec],
              playbooks_dir: Path) -> dict[str, FastAnswer]:
    """Every node's fingerprint and live-state items, one SSH call each, all at once."""
    driver = NODE_SCRIPT.read_text()
    live_source = (playbooks_dir / LIVE_MODULE).read_text()

    def ask(host: str) -> FastAnswer:
        spec = {**specs[host].as_dict(), "live_source": live_source}
        payload = base64.b64encode(json.dumps(spec).encode()).decode()
        program = f"{driver}\nimport base64\nmain(json.loads(base64.b64decode({payload!r})))\n"
        try:
            proc = subprocess.run(ssh_argv(connection, addresses[host], "python3 -"), input=program,
                                  capture_output=True, text=True, errors="replace", timeout=ANSWER_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired:
            return FastAnswer(None, None, "no answer in time")
        except OSError as exc:
            return FastAnswer(None, None, f"cannot run ssh: {exc.strerror}")
        if proc.returncode == 255:  # ssh's own failure: its reason, as the probes give it
            return FastAnswer(None, None, explain_ssh_failure(proc.stderr))
        return read_answer(proc.returncode, proc.stdout)

    with ThreadPoolExecutor(max_workers=min(32, len(specs))) as pool:
        return dict(zip(specs, pool.map(ask, specs), strict=True))


def read_answer(returncode: int, stdout: str) -> FastAnswer:
    """A node's answer is data, and only a well-formed one counts (anything else: no fingerprint)."""
    try:
        answer = json.loads(stdout.strip().splitlines()[-1]) if returncode == 0 else None
    except (ValueError, IndexError, RecursionError):
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("fingerprint"), str) \
            or not isinstance(answer.get("live"), list) or not all(isinstance(i, dict) for i in answer["live"]):
        return FastAnswer(None, None, f"exit {returncode}" if returncode else "no readable answer")
    return FastAnswer(answer["fingerprint"], answer["live"])


@dataclass(frozen=True)
class FastCheck:
    """The outcome of the fast path: clean (the check-mode run is not needed) or why it does not apply."""

    clean: bool
    reason: str
    duration_s: float

    def as_dict(self) -> JsonObject:
        return {"method": "fingerprint" if self.clean else "playbook", "fast_path": self.reason,
                "fast_path_s": round(self.duration_s, 2)}

    def run_result(self, hosts: list[str], check: bool) -> TruckRunResult:
        """The fast path as the truck tier's result (a check or a converge): every node answered, nothing
        changes. No playbook ran: no artifacts."""
        return TruckRunResult("successful", 0, check, {h: HostStats(ok=1) for h in hosts}, [], [], self.duration_s, "")


class FastPath:
    """One truck run's use of the fast path (drift's check, or `up`'s converge): try it; else take the
    fingerprints around the full run and record them as the baseline when that run found (or changed)
    nothing. It never fails the run: whatever goes wrong here means the full run (and no baseline)."""

    def __init__(self, state_dir: Path, stage: str, plan: RunPlan, connection: Connection,
                 addresses: dict[str, str]) -> None:
        self.baselines = Baselines(state_dir, stage)
        self.plan, self.connection, self.addresses = plan, connection, addresses
        self.fallback = "full check" if plan.check else "playbook run"
        self.key: str | None = None
        self.before: dict[str, FastAnswer] | None = None
        self.specs: dict[str, NodeSpec] | None = None

    def try_clean(self, full: bool = False) -> FastCheck:
        """Whether every node is as at the last clean run. With `full` (--full) the answer is not used, but
        the fingerprints are still taken: they let the full run record the baseline."""
        started = time.monotonic()
        try:
            outcome = self._try_clean(started)
        except Exception as exc:  # an optimisation must not fail the run: the full one runs
            self.before = None
            outcome = FastCheck(False, f"fast path not available ({type(exc).__name__}): {self.fallback}",
                                time.monotonic() - started)
        return FastCheck(False, "not used: --full", outcome.duration_s) if full else outcome

    def _try_clean(self, started: float) -> FastCheck:
        self.key = inputs_key(self.plan)
        loaded = self.baselines.load(self.key)
        if loaded is None:
            return FastCheck(False, f"no baseline for these inputs: {self.fallback}", time.monotonic() - started)
        self.specs, fingerprints = loaded
        if set(self.specs) != set(self.addresses):
            return FastCheck(False, f"the baseline covers other nodes: {self.fallback}", time.monotonic() - started)
        self.before = ask_nodes(self.connection, self.addresses, self.specs, self.plan.project_dir)
        silent = sorted(f"{h} ({a.detail})" if a.detail else h for h, a in self.before.items() if a.fingerprint is None)
        moved = sorted(h for h, a in self.before.items() if a.fingerprint is not None
                       and (fingerprints is None or a.fingerprint != fingerprints.get(h) or a.live))
        took = time.monotonic() - started
        if silent:
            return FastCheck(False, f"no fingerprint from {', '.join(silent)}: {self.fallback}", took)
        if fingerprints is None:
            return FastCheck(False, f"no clean run recorded yet for these inputs: {self.fallback}", took)
        if moved:
            return FastCheck(False, f"changed since the last clean run on {', '.join(moved)}: {self.fallback}", took)
        return FastCheck(True, f"every node as at the last clean run ({len(self.before)} nodes)", took)

    def after_full_run(self, run: TruckRunResult) -> None:
        """Record what this full run shows: its spec (a run that succeeded), and its fingerprints as the
        baseline only when it found or changed nothing and held nothing back, the nodes did not move while
        it ran and its inputs did not change."""
        try:
            self._record(run)
        except Exception:  # never fail the run that already ended: drop the baseline instead
            self.baselines.forget()

    def _record(self, run: TruckRunResult) -> None:
        specs = spec_from_run(Path(run.artifacts_dir) / "job_events", list(self.addresses)) \
            if run.ok and run.artifacts_dir and self.key is not None else None
        if specs is None or self.key is None or inputs_key(self.plan) != self.key:
            self.baselines.forget()
            return
        fingerprints = None
        if not run.changes and not run.held and self.before is not None and specs == self.specs:
            after = ask_nodes(self.connection, self.addresses, specs, self.plan.project_dir)
            if all(after[h].fingerprint is not None and after[h].fingerprint == self.before[h].fingerprint
                   and not after[h].live for h in after):
                fingerprints = {h: str(a.fingerprint) for h, a in after.items()}
        self.baselines.save(self.key, specs, fingerprints)


def remember_spec(state_dir: Path, stage: str, plan: RunPlan, run: TruckRunResult) -> None:
    """After a converge of the whole stage (`up`, a fix): its spec, so that the next check can take the
    fingerprints before it runs. A baseline recorded for the same inputs and spec stays: the fast path still
    compares every node with it."""
    baselines = Baselines(state_dir, stage)
    try:
        specs = spec_from_run(Path(run.artifacts_dir) / "job_events", plan.hosts) \
            if run.ok and run.artifacts_dir else None
        if specs is None:
            baselines.forget()
            return
        key = inputs_key(plan)
        loaded = baselines.load(key)
        if loaded is None or loaded[0] != specs:
            baselines.save(key, specs)
    except OSError:  # the converge stands; the next check runs in full
        baselines.forget()


def node_addresses(stage: Stage) -> dict[str, str]:
    return {node.name: str(node.address) for _, node in stage.nodes()}
