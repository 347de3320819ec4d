"""Run truckctl's benchmarks and write docs/BENCHMARKS.md.

    python bench/run.py            # every benchmark this machine can run
    python bench/run.py --quick    # fewer repeats, skips the slow ones
    python bench/run.py --only cli-help validate-all

Each benchmark runs a warm-up, then at least 5 timed repeats (3 in quick mode); the report
gives median, min and max. Comparisons (A against B) run interleaved, A B A B ..., in the same
session, and are reported as ratios. Goals are checked here, never by timed assertions in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TRUCKCTL = [str(BIN / "truckctl"), "-C", str(REPO)]


@dataclass
class Step:
    """One timed action: a command line, or a Python callable for setup-dependent work."""

    label: str
    argv: list[str] | None = None
    call: Callable[[], None] | None = None
    goal_s: float | None = None  # this step's median must be at most this

    def run(self) -> float:
        start = time.perf_counter()
        if self.argv is not None:
            subprocess.run(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                           cwd=REPO)
        elif self.call is not None:
            self.call()
        return time.perf_counter() - start


@dataclass
class Benchmark:
    name: str
    what: str
    steps: list[Step]  # one step, or several run in turn (ratio = first / second)
    goal_ratio: float | None = None  # first / second must be at most this
    slow: bool = False
    needs_root: bool = False
    before: Callable[[], None] | None = None
    after: Callable[[], None] | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)

    def measure(self, repeats: int) -> None:
        if self.before:
            self.before()
        try:
            for step in self.steps:  # warm-up
                step.run()
            for _ in range(repeats):
                for step in self.steps:  # interleaved
                    self.samples.setdefault(step.label, []).append(step.run())
        finally:
            if self.after:
                self.after()

    def verdict(self) -> tuple[str, bool]:
        first = statistics.median(self.samples[self.steps[0].label])
        parts, met = [], True
        for step in self.steps:
            if step.goal_s is not None:
                median = statistics.median(self.samples[step.label])
                met &= median <= step.goal_s
                parts.append(f"{step.label}: {median:.3f} s, goal <= {step.goal_s} s")
        if self.goal_ratio is not None and len(self.steps) > 1:
            ratio = first / statistics.median(self.samples[self.steps[1].label])
            met &= ratio <= self.goal_ratio
            parts.append(f"ratio {ratio:.2f}x, goal <= {self.goal_ratio}x")
        return "; ".join(parts), met


def benchmarks() -> list[Benchmark]:
    py = sys.executable
    items = [
        Benchmark("cli-help", "`truckctl --help` against a bare Typer app's `--help`",
                  [Step("truckctl --help", [*TRUCKCTL, "--help"], goal_s=0.150),
                   Step("bare typer --help", [py, str(REPO / "bench" / "hello_typer.py"), "--help"])],
                  goal_ratio=1.5),
        Benchmark("validate-all", "`truckctl validate --all` (21 stages)",
                  [Step("truckctl validate --all", [*TRUCKCTL, "validate", "--all"], goal_s=0.400)]),
    ]
    extra = REPO / "bench" / "suites.py"
    if extra.exists():  # later suites (plan, lab, truck tier) register themselves there
        sys.path.insert(0, str(REPO / "bench"))
        import suites  # type: ignore[import-not-found]

        items += suites.benchmarks(TRUCKCTL, Step, Benchmark)
    return items


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, "
            f"Python {platform.python_version()}")


def write_report(done: list[Benchmark], path: Path, repeats: int) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()}.",
        "",
        "Reproduce: `.venv/bin/python bench/run.py` (all; root is needed for the lab ones) or "
        "`--quick`. Each figure: a warm-up, then "
        f"{repeats} timed repeats; median (min - max). Comparisons ran interleaved in one session.",
        "",
        "| benchmark | what | step | median s | min s | max s | goal | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for bench in done:
        text, met = bench.verdict()
        for i, step in enumerate(bench.steps):
            s = bench.samples[step.label]
            lines.append(f"| {bench.name if i == 0 else ''} | {bench.what if i == 0 else ''} | {step.label} | "
                         f"{statistics.median(s):.3f} | {min(s):.3f} | {max(s):.3f} | "
                         f"{text if i == 0 else ''} | {('yes' if met else '**no**') if i == 0 else ''} |")
    lines += ["", "Goals are per step (`goal <= N s`) and, for comparisons, on the ratio of the first step's "
              "median to the second's."]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repeats, skip slow benchmarks")
    parser.add_argument("--only", nargs="*", help="names of benchmarks to run")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--report", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    parser.add_argument("--no-report", action="store_true", help="print only, leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    chosen = [b for b in benchmarks() if (not args.only or b.name in args.only) and not (args.quick and b.slow)]
    done, missed = [], []
    for bench in chosen:
        if bench.needs_root and os.geteuid() != 0:
            print(f"skip {bench.name}: needs root")
            continue
        bench.measure(repeats)
        text, met = bench.verdict()
        print(f"{bench.name}: {text} -> {'met' if met else 'MISSED'}", flush=True)
        done.append(bench)
        if not met:
            missed.append(bench.name)
    if not args.no_report and done:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        write_report(done, args.report, repeats)
    results = {b.name: {k: statistics.median(v) for k, v in b.samples.items()} for b in done}
    print(json.dumps({"results": results, "missed": missed}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
