"""The benchmark harness: steps, benchmarks, their schedule, verdicts and the report.

Kept free of side effects on import so tests/unit/test_bench.py checks it without timing anything.

- A `Step` is one timed action (a command line or a callable), with an optional untimed `setup`
  run before every sample of it (a fresh lab, closing SSH masters...).
- A `Benchmark` runs a warm-up, then its steps interleaved (A B A B ...) `repeats` times. Its
  `before`/`after` hooks frame the whole run; `after` always runs, even when `before` failed.
- Goals: per step (`goal_s`: the median must be at most this) and, for comparisons, on the ratio of
  the first step's median to the second's (`goal_ratio`: at most this). A benchmark may belong to a
  `series` (x = e.g. nodes); the series gets a curve and a sub-linear verdict.
- The load average is recorded before and after each benchmark: the figures are only as quiet as the
  machine was.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Clock = Callable[[], float]


class Skip(Exception):
    """This benchmark cannot run here now (said in the report, not counted as a failure)."""


@dataclass
class Step:
    """One timed action: a command line, or a Python callable for setup-dependent work."""

    label: str
    argv: list[str] | None = None
    call: Callable[[], object] | None = None  # its return value is ignored
    goal_s: float | None = None  # this step's median must be at most this
    setup: Callable[[], None] | None = None  # untimed, before every sample (warm-up included)
    cwd: Path | None = None
    env: dict[str, str] | None = None
    # Cumulative CPU seconds of work done outside our child processes (e.g. the lab nodes' cgroup).
    cpu_probe: Callable[[], float] | None = None

    def run(self, clock: Clock = time.perf_counter) -> tuple[float, float]:
        """One sample: (wall seconds, CPU seconds of the children we waited for + the cpu_probe's)."""
        if self.setup is not None:
            self.setup()
        cpu = children_cpu() + (self.cpu_probe() if self.cpu_probe else 0.0)
        start = clock()
        if self.argv is not None:
            subprocess.run(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                           cwd=self.cwd, env=self.env)
        elif self.call is not None:
            self.call()
        wall = clock() - start
        return wall, children_cpu() + (self.cpu_probe() if self.cpu_probe else 0.0) - cpu


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_pressure_total() -> float | None:
    """Seconds some runnable task waited for a CPU, since boot (Linux PSI), or None without PSI."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return int(first.rsplit("total=", 1)[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return None


IDLE_PROBE_S = 3.0  # how long a benchmark first watches the machine doing nothing of ours
BUSY_IDLE_PRESSURE = 10.0  # % of that time something else waited for a CPU: the machine is busy


def idle_pressure(probe_s: float = IDLE_PROBE_S, pressure: Callable[[], float | None] = cpu_pressure_total,
                  sleep: Callable[[float], None] = time.sleep) -> float | None:
    """% of `probe_s` some task waited for a CPU while we run nothing: other people's load.

    The load average cannot tell: it still carries the previous benchmark's own lab for minutes.
    """
    first = pressure()
    sleep(probe_s)
    last = pressure()
    if first is None or last is None or probe_s <= 0:
        return None
    return min(100.0, 100 * (last - first) / probe_s)


def schedule(steps: list[Step], repeats: int, warmup: int = 1) -> list[tuple[bool, Step]]:
    """The order steps run in: `warmup` rounds (untimed), then `repeats` interleaved rounds.

    Each entry is (timed, step); a round runs every step once, in order, so a comparison's sides
    see the same machine conditions (A B A B ..., never A A A B B B).
    """
    order = [(False, step) for _ in range(warmup) for step in steps]
    return order + [(True, step) for _ in range(repeats) for step in steps]


def load() -> tuple[float, float, float]:
    with contextlib.suppress(OSError):
        return os.getloadavg()
    return (0.0, 0.0, 0.0)


@dataclass
class Benchmark:
    name: str
    what: str
    steps: list[Step]  # one step, or several run in turn (ratio = first / second)
    goal_ratio: float | None = None  # first / second must be at most this
    compare: bool = True  # several steps are a comparison (ratio first / second), not a sequence
    slow: bool = False
    needs_root: bool = False
    before: Callable[[], None] | None = None
    after: Callable[[], None] | None = None
    warmup: int = 1
    series: str | None = None  # e.g. "scaling": benchmarks of one series form a curve
    x: float | None = None  # this benchmark's place on the series' curve (e.g. nodes)
    miss_reason: str = ""  # what dominates the figure, for the closing note if a goal is missed
    samples: dict[str, list[float]] = field(default_factory=dict)
    parts: dict[str, list[float]] = field(default_factory=dict)  # sub-timings reported by the steps
    cpu: dict[str, list[float]] = field(default_factory=dict)  # CPU seconds per timed sample, by step
    pressure: float | None = None  # % of the timed phase some task waited for a CPU (PSI), None if unknown
    idle: float | None = None  # the same while nothing of ours ran, just before the benchmark: others' load
    notes: list[str] = field(default_factory=list)
    load_before: tuple[float, float, float] | None = None
    load_after: tuple[float, float, float] | None = None
    error: str | None = None
    skipped: str | None = None
    when: str = ""

    def record(self, label: str, seconds: float) -> None:
        """A sub-timing of a timed sample (e.g. the truck tier inside `truckctl up`), shown as a part."""
        self.parts.setdefault(label, []).append(seconds)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def measure(self, repeats: int, clock: Clock = time.perf_counter,
                loadavg: Callable[[], tuple[float, float, float]] = load,
                pressure: Callable[[], float | None] = cpu_pressure_total, idle_probe_s: float = IDLE_PROBE_S
                ) -> None:
        """Warm up, then time the steps interleaved. Failures are recorded, never raised (but Ctrl-C is)."""
        self.when = time.strftime("%Y-%m-%d %H:%M")
        self.load_before = loadavg()
        self.idle = idle_pressure(idle_probe_s, pressure) if idle_probe_s > 0 else None
        phase: tuple[float, float | None] | None = None
        try:
            if self.before:
                self.before()
            self.parts.clear()
            for timed, step in schedule(self.steps, repeats, self.warmup):
                if timed and phase is None:
                    phase = (time.monotonic(), pressure())
                seconds, cpu = step.run(clock)
                if timed:
                    self.samples.setdefault(step.label, []).append(seconds)
                    self.cpu.setdefault(step.label, []).append(cpu)
                else:
                    self.parts.clear()  # sub-timings of the warm-up do not count
            if phase is not None:
                waited, elapsed = pressure(), time.monotonic() - phase[0]
                if waited is not None and phase[1] is not None and elapsed > 0:
                    self.pressure = min(100.0, 100 * (waited - phase[1]) / elapsed)
        except Skip as exc:
            self.skipped = str(exc)
        except Exception as exc:  # one broken benchmark must not stop the others (nor skip `after`)
            self.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            self.load_after = loadavg()
            if self.after:
                try:
                    self.after()
                except Exception as exc:
                    self.error = (self.error + "; " if self.error else "") + f"clean-up: {type(exc).__name__}: {exc}"
                    traceback.print_exc()

    @property
    def complete(self) -> bool:
        return (self.error is None and self.skipped is None
                and all(self.samples.get(step.label) for step in self.steps))

    def median(self, label: str) -> float:
        return statistics.median(self.samples[label])

    def ratio(self) -> float | None:
        if len(self.steps) < 2 or not self.compare or not self.complete:
            return None
        return self.median(self.steps[0].label) / self.median(self.steps[1].label)

    def verdict(self) -> tuple[str, bool | None]:
        """(text, met): met is None when the benchmark has no goal of its own."""
        if self.skipped is not None:
            return f"skipped: {self.skipped}", None
        if not self.complete:
            return f"failed: {self.error or 'no samples'}", False
        parts: list[str] = []
        met: bool | None = None
        for step in self.steps:
            if step.goal_s is not None:
                median = self.median(step.label)
                ok = median <= step.goal_s
                met = ok if met is None else met and ok
                parts.append(f"{step.label}: {median:.2f} s, goal <= {step.goal_s:g} s")
        ratio = self.ratio()
        if ratio is not None:
            if self.goal_ratio is not None:
                ok = ratio <= self.goal_ratio
                met = ok if met is None else met and ok
                parts.append(f"ratio {ratio:.2f} ({speedup(ratio)}), goal <= {self.goal_ratio:g}")
            else:
                parts.append(f"ratio {ratio:.2f} ({speedup(ratio)}), no goal")
        return "; ".join(parts), met

    def to_dict(self) -> dict[str, Any]:
        text, met = self.verdict()
        return {
            "name": self.name, "what": self.what, "when": self.when, "series": self.series, "x": self.x,
            "steps": [{"label": s.label, "goal_s": s.goal_s} for s in self.steps], "goal_ratio": self.goal_ratio,
            "compare": self.compare,
            "samples": self.samples, "parts": self.parts, "cpu": self.cpu, "pressure": self.pressure, "idle": self.idle,
            "notes": self.notes, "miss_reason": self.miss_reason,
            "load_before": self.load_before, "load_after": self.load_after, "error": self.error,
            "skipped": self.skipped, "verdict": text, "met": met,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Benchmark:
        """A benchmark measured in an earlier session (for `--merge`): its samples, not its actions."""
        bench = cls(data["name"], data["what"], [Step(s["label"], goal_s=s.get("goal_s")) for s in data["steps"]],
                    goal_ratio=data.get("goal_ratio"), compare=data.get("compare", True), series=data.get("series"),
                    x=data.get("x"),
                    miss_reason=data.get("miss_reason", ""))
        bench.samples = {k: list(v) for k, v in data.get("samples", {}).items()}
        bench.parts = {k: list(v) for k, v in data.get("parts", {}).items()}
        bench.cpu = {k: list(v) for k, v in data.get("cpu", {}).items()}
        bench.pressure = data.get("pressure")
        bench.idle = data.get("idle")
        bench.notes = list(data.get("notes", []))
        bench.when = data.get("when", "")
        bench.error, bench.skipped = data.get("error"), data.get("skipped")
        for key in ("load_before", "load_after"):
            value = data.get(key)
            setattr(bench, key, tuple(value) if value else None)
        return bench


def speedup(ratio: float) -> str:
    return f"{1 / ratio:.1f}x faster" if ratio < 1 else f"{ratio:.1f}x slower"


# ---- series (e.g. scaling: time against nodes) -------------------------------------------------------

def curve(benches: Iterable[Benchmark], series: str) -> list[tuple[float, float, Benchmark]]:
    """(x, median of the first step, benchmark) for the complete benchmarks of a series, by x."""
    points = [(b.x, b.median(b.steps[0].label), b) for b in benches
              if b.series == series and b.x is not None and b.complete]
    return sorted(points, key=lambda p: p[0])


def curve_verdict(points: list[tuple[float, float]]) -> tuple[str, bool | None]:
    """Sub-linear growth: each step up the curve grows time by less than it grows x (t/x falls).

    Also reports the marginal cost per unit of x between neighbours, so a curve that is
    sub-proportional only thanks to a fixed start-up cost is visible as such.
    """
    if len(points) < 2:
        return "needs at least two points", None
    ok = True
    parts = []
    for (x0, t0), (x1, t1) in itertools.pairwise(points):
        grows, scale = t1 / t0, x1 / x0
        ok &= grows < scale
        parts.append(f"{x0:g} -> {x1:g}: time x{grows:.2f} for x{scale:g} "
                     f"({(t1 - t0) / (x1 - x0):+.2f} s per added unit)")
    x0, t0 = points[0]
    x1, t1 = points[-1]
    overall = f"overall {x0:g} -> {x1:g}: time x{t1 / t0:.2f} for x{x1 / x0:g}"
    return "; ".join([*parts, overall]) + (" -> sub-linear" if ok else " -> NOT sub-linear"), ok


# ---- the report -----------------------------------------------------------------------------------

def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, "
            f"Python {platform.python_version()}")


def _load(value: tuple[float, float, float] | None) -> str:
    return "/".join(f"{v:.2f}" for v in value) if value else "?"


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}%"


def _met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[met]


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def report(done: list[Benchmark], repeats: int, machine_text: str, series_goals: dict[str, str] | None = None,
           notes: list[str] | None = None, command: str = ".venv/bin/python bench/run.py") -> str:
    """docs/BENCHMARKS.md: every figure (median, min, max), goals, load, misses with their reasons."""
    series_goals = series_goals or {}
    cores = os.cpu_count() or 1
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {machine_text}. Written {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"Reproduce everything with one command, as root from the repository: `{command}` "
        "(`--quick`: 3 repeats and no slow benchmarks; `--only NAME ...`: some of them; `--merge`: keep "
        "the figures of benchmarks not re-run). Each figure is a warm-up, then "
        f"{repeats} timed repeats (unless said otherwise in the table); median (min - max), in seconds. "
        "Comparisons ran interleaved (A B A B ...) in one session; their ratio is the first step's median "
        "over the second's. Goals are checked here, never by timed assertions in tests.",
        "",
        "Load average (1/5/15 min) is recorded before and after each benchmark, and the CPU pressure "
        "(Linux PSI: the share of time some runnable task waited for a CPU) twice: *idle*, over "
        f"{IDLE_PROBE_S:.0f} s with nothing of ours running just before the benchmark (other people's load: "
        f"above {BUSY_IDLE_PRESSURE:.0f}% the machine was busy and the figures are inflated), and *run*, during "
        "its timed samples (mostly the benchmark's own work: a lab's nodes and Ansible share "
        f"{cores} cores). The load average after a lab benchmark still carries that benchmark's own work for "
        "minutes, so it says little about other load on its own. The `CPU s` column (median CPU seconds per "
        "sample: our processes, plus the lab nodes' cgroup for lab runs) is what the work costs whatever "
        f"the load: with {cores} cores, a sample cannot take less than CPU s / {cores} of wall time.",
        "",
        "## Results",
        "",
        "| benchmark | step | median | min | max | n | CPU s | goal | met | load before -> after; CPU pressure "
        "idle / run "
        "| when |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    missed: list[Benchmark] = []
    for bench in done:
        text, met = bench.verdict()
        if met is False:
            missed.append(bench)
        title = f"`{bench.name}`<br>{bench.what}"
        conditions = f"{_load(bench.load_before)} -> {_load(bench.load_after)}; {_percent(bench.idle)} / " \
            f"{_percent(bench.pressure)}"
        if not bench.samples:
            lines.append(_row(title, "-", "-", "-", "-", 0, "-", text, _met(met), conditions, bench.when))
            continue
        first = True
        for step in bench.steps:
            s = bench.samples.get(step.label, [])
            if not s:
                continue
            cpu = bench.cpu.get(step.label)
            goal = f"<= {step.goal_s:g} s" if step.goal_s is not None else ""
            lines.append(_row(title if first else "", step.label, f"{statistics.median(s):.2f}", f"{min(s):.2f}",
                              f"{max(s):.2f}", len(s), f"{statistics.median(cpu):.1f}" if cpu else "", goal, "",
                              conditions if first else "", bench.when if first else ""))
            first = False
        for label, s in bench.parts.items():
            lines.append(_row("", f"&nbsp;&nbsp;of which: {label}", f"{statistics.median(s):.2f}", f"{min(s):.2f}",
                              f"{max(s):.2f}", len(s), "", "", "", "", ""))
        lines.append(_row("", "**verdict**", "", "", "", "", "", text, _met(met), "", ""))
    series_names = list(dict.fromkeys(b.series for b in done if b.series))
    for name in series_names:
        points = curve(done, name)
        lines += ["", f"## Curve: {name}", "", series_goals.get(name, ""), "",
                  "| x | median s | s per x | load before -> after |", "|---|---|---|---|"]
        for x, t, bench in points:
            lines.append(_row(f"{x:g}", f"{t:.2f}", f"{t / x:.2f}",
                              f"{_load(bench.load_before)} -> {_load(bench.load_after)}"))
        text, met = curve_verdict([(x, t) for x, t, _ in points])
        lines += ["", f"Verdict: {text}. Goal met: {_met(met)}."]
        if met is False:
            missed.append(Benchmark(f"{name} (curve)", "", [], miss_reason=text))
    noted = [b for b in done if b.notes]
    if noted:
        lines += ["", "## What each run did", ""]
        for bench in noted:
            lines += [f"- `{bench.name}`: " + "; ".join(bench.notes)]
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", "## Goals missed", ""]
    if not missed:
        lines.append("None: every goal measured in this report is met.")
    for bench in missed:
        text, _ = bench.verdict() if bench.steps else (bench.miss_reason, False)
        why = bench.miss_reason if bench.steps else ""
        if bench.idle is not None and bench.idle > BUSY_IDLE_PRESSURE:
            why = (why + " " if why else "") + (f"Measured while the machine was busy with other work (CPU "
                                                f"pressure {bench.idle:.0f}% before it started, with nothing of "
                                                f"ours running): re-run on a quiet machine before concluding.")
        lines.append(f"- `{bench.name}`: {text}." + (f" {why}" if why else ""))
    return "\n".join(lines) + "\n"


def save_results(done: list[Benchmark], path: Path) -> None:
    write_whole(path, json.dumps({"machine": machine(), "benchmarks": [b.to_dict() for b in done]}, indent=1) + "\n")


def write_whole(path: Path, text: str) -> None:
    """Replace the file at once: a signal arriving while it is written leaves the old one, never half."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def load_results(path: Path) -> list[Benchmark]:
    if not path.is_file():
        return []
    return [Benchmark.from_dict(item) for item in json.loads(path.read_text()).get("benchmarks", [])]


def recorded_repeats(done: list[Benchmark]) -> int | None:
    """The timed repeats most of these benchmarks' steps were measured with (None: no samples)."""
    counts = Counter(len(samples) for bench in done for samples in bench.samples.values() if samples)
    return counts.most_common(1)[0][0] if counts else None


def merge(previous: list[Benchmark], current: list[Benchmark], order: list[str]) -> list[Benchmark]:
    """The current session's benchmarks, plus earlier ones not re-run now; in registry order."""
    by_name = {b.name: b for b in previous}
    by_name.update({b.name: b for b in current})
    rank = {name: i for i, name in enumerate(order)}
    return sorted(by_name.values(), key=lambda b: rank.get(b.name, len(rank)))
