"""Benchmarks beyond start-up: offline plan, the lab, the truck tier, scaling, drift.

Registered by bench/run.py; each returns Benchmark objects built from run.py's Step/Benchmark.
"""

from __future__ import annotations

import subprocess
from typing import Any


def _quiet(argv: list[str]) -> None:
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def benchmarks(truckctl: list[str], step: Any, bench: Any) -> list[Any]:
    lab_down = [*truckctl, "lab", "down"]
    return [
        bench("offline-plan-one", "`truckctl plan stage-1 --offline` (real stack program under mocks)",
              [step("plan stage-1 --offline", [*truckctl, "plan", "stage-1", "--offline"], goal_s=2.0)]),
        bench("offline-plan-all", "`truckctl plan --all --offline` (21 stages, a fresh process each)",
              [step("plan --all --offline", [*truckctl, "plan", "--all", "--offline"], goal_s=20.0)], slow=True),
        bench("lab-up-down", "`truckctl lab up stage-1` from a cached rootfs, then `truckctl lab down`",
              [step("lab up stage-1 (rootfs cached)", [*truckctl, "lab", "up", "stage-1"], goal_s=20.0),
               step("lab down", lab_down, goal_s=10.0)],
              needs_root=True, slow=True,
              before=lambda: _quiet(lab_down), after=lambda: _quiet(lab_down)),
    ]
