"""Offline plan worker: evaluate stacks/__main__.py under Pulumi mocks, one forked child per stage.

    python -m truckctl.cloud.offline_worker --project DIR [--jobs N] [--set KEY=VALUE] (--all | STAGE... | race)

The program is the race's one stack (named after the race id); each STAGE is that stack moved to
the stage (config `stage`), and `race` is the stack between stages (no tech zone).

Pulumi's runtime keeps global state, so every stage needs a fresh interpreter; importing pulumi
and the pulumi_aws submodules costs about a second, so this process imports them once and then
forks one child per stage (fresh runtime state, warm imports), `--jobs` at a time. Each child
sends one JSON document back through a pipe; when all are done this process prints one JSON
line per stage on stdout, in completion order. Secrets never leave a child: inputs and outputs marked secret are
replaced by "[secret]" before serialisation.
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import importlib
import json
import logging
import os
import selectors
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from truckctl.jsondoc import JsonObject

PROGRAM = "__main__.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="truckctl.cloud.offline_worker")
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="stack config for every stage (e.g. deleteData=true)")
    parser.add_argument("--all", action="store_true", help="every stage of the project")
    parser.add_argument("stages", nargs="*")
    args = parser.parse_args(argv)
    stacks_dir = args.project.resolve() / "stacks"
    project_name = _project_name(stacks_dir)
    settings = dict(item.split("=", 1) for item in args.set if "=" in item)
    _warm(stacks_dir)
    from truckctl.config.loader import load_race, stage_names
    from truckctl.project import Project

    project = Project(args.project.resolve())
    stack = load_race(project).race.race.id
    stages = args.stages
    if args.all:
        stages = stage_names(project)
    for line in _fork_all(stages, max(1, args.jobs),
                          lambda stage: _evaluate(stacks_dir, project_name, stack, stage, settings)):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    return 0


def _project_name(stacks_dir: Path) -> str:
    import yaml

    with open(stacks_dir / "Pulumi.yaml", encoding="utf-8") as file:
        return str(yaml.safe_load(file)["name"])


def _warm(stacks_dir: Path) -> None:
    """Import everything the program needs before forking, so children start with it in memory."""
    sys.path.insert(0, str(stacks_dir))
    import pulumi_aws

    for module in ("truckctl.cloud.mocks", "truckctl.config.loader", "pulumi.runtime.mocks"):
        importlib.import_module(module)
    program = importlib.import_module("race_cloud.program")
    for service in program.AWS_SERVICES:
        # Any non-introspection attribute makes pulumi's lazy module load for real (__name__ would not).
        hasattr(getattr(pulumi_aws, service), "__all__")
    from cryptography.hazmat.primitives.asymmetric import x25519  # noqa: F401  (VPN public key)

    # Keep the warm heap out of the collector's reach: children then share its pages instead of copying them.
    gc.collect()
    gc.freeze()


def _fork_all(stages: list[str], jobs: int, evaluate: Any) -> list[str]:
    """Run `evaluate(stage)` in a forked child per stage, `jobs` at a time; return their JSON lines."""
    pending = list(stages)
    running: dict[int, tuple[str, int, list[bytes]]] = {}  # read fd -> (stage, pid, chunks)
    lines: list[str] = []
    selector = selectors.DefaultSelector()
    sys.stdout.flush()
    sys.stderr.flush()
    while pending or running:
        while pending and len(running) < jobs:
            stage = pending.pop(0)
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # child
                os.close(read_fd)
                _child(stage, write_fd, evaluate)
            os.close(write_fd)
            running[read_fd] = (stage, pid, [])
            selector.register(read_fd, selectors.EVENT_READ)
        for key, _ in selector.select():
            fd = int(key.fd)
            chunk = os.read(fd, 1 << 16)
            if chunk:
                running[fd][2].append(chunk)
                continue
            selector.unregister(fd)
            os.close(fd)
            stage, pid, chunks = running.pop(fd)
            _, status = os.waitpid(pid, 0)
            data = b"".join(chunks)
            if not data or os.waitstatus_to_exitcode(status) != 0:
                data = json.dumps({"stage": stage, "ok": False,
                                   "error": f"the plan of {stage} ended abnormally (exit status {status})"}).encode()
            lines.append(data.decode())
    selector.close()
    return lines


def _child(stage: str, write_fd: int, evaluate: Any) -> None:
    gc.disable()  # a short-lived child: collection only costs time
    try:
        document = evaluate(stage)
    except BaseException as exc:  # reported to the parent as data, never as a traceback
        document = {"stage": stage, "ok": False, "error": _one_line(exc)}
    payload = json.dumps(document, default=str).encode()
    with os.fdopen(write_fd, "wb") as pipe:
        pipe.write(payload)
    os._exit(0)  # skip atexit handlers and buffers inherited from the parent


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 2000 else text[:2000] + "..."


RACE = "race"  # the job name of the race stack between stages (no `stage` config)


def placeholder_vpn_key(stack: str) -> str:
    """A deterministic, obviously fake WireGuard key, so plans are reproducible (and never a real key).

    One per race stack: the hub's key lasts the race, the same whatever the day."""
    return base64.b64encode(hashlib.sha256(f"truckctl offline plan {stack}".encode()).digest()).decode()


def _evaluate(stacks_dir: Path, project_name: str, stack: str, stage: str,
              settings: dict[str, str]) -> JsonObject:
    import runpy

    import pulumi
    from pulumi.runtime import config as runtime_config
    from pulumi.runtime import settings as runtime_settings
    from pulumi.runtime.mocks import set_mocks
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    from truckctl.cloud.mocks import CaptureMonitor, PlanMocks, is_secret
    from truckctl.cloud.resources import normalise

    warnings: list[str] = []
    logger = logging.getLogger(f"truckctl.offline.{stage}")
    logger.propagate = False
    logger.addHandler(_ListHandler(warnings))
    plan_mocks = PlanMocks()
    monitor = CaptureMonitor(plan_mocks)
    key = f"{project_name}:vpnPrivateKey"
    config = {f"{project_name}:{name}": value for name, value in settings.items()}
    if stage != RACE:
        config[f"{project_name}:stage"] = stage
    runtime_config.set_all_config({**config, key: placeholder_vpn_key(stack)}, secret_keys=[key])
    set_mocks(plan_mocks, project=project_name, stack=stack, preview=False, logger=logger, monitor=monitor)
    def program() -> None:
        runpy.run_path(str(stacks_dir / PROGRAM), run_name="__main__")

    _sync_await(run_pulumi_func(program))

    root = runtime_settings.get_root_resource()
    outputs: JsonObject = {}
    for name, value in (getattr(root, "outputs", None) or {}).items():
        output = pulumi.Output.from_input(value)
        resolved = _sync_await(output.future())
        outputs[name] = _redact(resolved) if _sync_await(output.is_secret()) else resolved
    registrations = []
    for registration in monitor.registrations.values():
        record = asdict(registration)
        record["inputs"] = normalise(registration.inputs, is_secret)
        registrations.append(record)
    return {"stage": stage, "ok": True, "region": plan_mocks.region, "registrations": registrations,
            "outputs": outputs, "warnings": warnings}


def _redact(value: Any) -> Any:
    """Keep the shape of a secret output (its keys), never its values."""
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return "[secret]"


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage().strip())


if __name__ == "__main__":
    sys.exit(main())
