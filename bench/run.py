"""Run truckctl's benchmarks and write docs/BENCHMARKS.md.

    python bench/run.py            # every benchmark this machine can run (root for the lab ones)
    python bench/run.py --quick    # 3 repeats, skips the slow ones
    python bench/run.py --only cli-help validate-all
    python bench/run.py --list     # what there is

Each benchmark runs a warm-up, then at least 5 timed repeats (3 in quick mode); the report
gives median, min and max. Comparisons (A against B) run interleaved, A B A B ..., in the same
session, and are reported as ratios. Goals are checked here, never by timed assertions in tests.

Self-cleaning: every lab benchmark works on its own temporary project and takes its lab down when
it ends, fails or is interrupted (Ctrl-C, SIGTERM, SIGHUP); temporary projects are removed at exit.
Raw figures go to bench/results.json (`--merge` keeps earlier figures of benchmarks not re-run);
results and report are written after each benchmark, so an interruption keeps what finished.
Exit status: 0 when every chosen benchmark ran (goals met or not: see the report), 1 if one failed,
130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # bench/ is not a package: run as a script, it imports its siblings
    Benchmark,
    Step,
    load_results,
    machine,
    merge,
    recorded_repeats,
    report,
    save_results,
    write_whole,
)

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TRUCKCTL = [str(BIN / "truckctl"), "-C", str(REPO)]
RESULTS = REPO / "bench" / "results.json"


def benchmarks() -> list[Benchmark]:
    import suites

    py = sys.executable
    hello = [py, str(REPO / "bench" / "hello_typer.py"), "--help"]
    items = [
        Benchmark("cli-help", "`truckctl --help` against a bare Typer app's `--help`, output to a pipe",
                  [Step("truckctl --help", [*TRUCKCTL, "--help"], goal_s=0.150),
                   Step("bare typer --help", hello)],
                  goal_ratio=1.5,
                  miss_reason="Start-up is Python plus typer/click imports; see `python -X importtime`."),
        Benchmark("cli-help-tty", "the same on a terminal (a pseudo-terminal: rich help for both apps)",
                  [Step("truckctl --help (tty)", call=suites.on_tty([*TRUCKCTL, "--help"])),
                   Step("bare typer --help (tty)", call=suites.on_tty(hello))],
                  goal_ratio=1.5),
        Benchmark("validate-all", "`truckctl validate --all` (21 stages)",
                  [Step("truckctl validate --all", [*TRUCKCTL, "validate", "--all"], goal_s=0.400)],
                  miss_reason="Loading and validating 22 YAML files with pydantic; CPU-bound."),
    ]
    return items + suites.benchmarks(TRUCKCTL)


class Interrupted(KeyboardInterrupt):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repeats, skip slow benchmarks")
    parser.add_argument("--only", nargs="*", help="names of benchmarks to run")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5; 3 with --quick)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--report", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    parser.add_argument("--no-report", action="store_true", help="print only, leave docs/BENCHMARKS.md alone")
    parser.add_argument("--results", type=Path, default=RESULTS, help="raw figures (JSON), default bench/results.json")
    parser.add_argument("--rewrite", action="store_true",
                        help="run nothing: write the report again from the results file")
    parser.add_argument("--merge", action="store_true",
                        help="keep the figures of benchmarks not run now from the results file")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    # Every installation runs Python with its bytecode cache (pip writes it at install, an editable install on
    # first import); a shell that turns it off (PYTHONDONTWRITEBYTECODE) would have each timed truckctl compile
    # its ~75 modules from source (~50 ms). The warm-up sample writes the cache.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    import suites

    registry = benchmarks()
    if args.list:
        for bench in registry:
            flags = ", ".join(f for f, on in (("slow", bench.slow), ("root", bench.needs_root)) if on)
            print(f"{bench.name:22} {bench.what}" + (f" [{flags}]" if flags else ""))
        return 0
    if args.rewrite:
        final = merge(load_results(args.results), [], [b.name for b in registry])
        reasons = {b.name: b.miss_reason for b in registry}
        for bench in final:  # the figures are as measured; why a goal is missed is as the code says now
            bench.miss_reason = reasons.get(bench.name, bench.miss_reason)
        repeats = args.repeats or recorded_repeats(final) or repeats  # as they were measured, unless told
        args.report.write_text(report(final, repeats, machine(), suites.SERIES_GOALS, suites.NOTES))
        print(f"wrote {args.report} from {args.results}")
        return 0
    unknown = set(args.only or []) - {b.name for b in registry}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))} (see --list)")
    chosen = [b for b in registry if (not args.only or b.name in args.only) and not (args.quick and b.slow)]
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    done: list[Benchmark] = []
    saved: list[str] = []  # the benchmarks whose figures are in the results file and the report
    previous = load_results(args.results) if args.merge else []

    def write() -> None:  # after each benchmark: a long series interrupted keeps what finished
        if args.no_report:
            return
        final = merge(previous, done, [b.name for b in registry])
        save_results(final, args.results)
        args.report.parent.mkdir(parents=True, exist_ok=True)
        write_whole(args.report, report(final, repeats, machine(), suites.SERIES_GOALS, suites.NOTES))
        saved[:] = [b.name for b in done]

    status = 0
    try:
        for bench in chosen:
            if bench.needs_root and os.geteuid() != 0:
                print(f"skip {bench.name}: needs root", flush=True)
                continue
            print(f"{bench.name}: running ({bench.what})", flush=True)
            bench.measure(repeats)
            if bench.error:
                status = 1
            done.append(bench)
            write()
            text, met = bench.verdict()
            outcome = {True: "met", False: "MISSED", None: "no goal"}[met] if bench.complete else (
                "skipped" if bench.skipped else "FAILED")
            print(f"{bench.name}: {text} -> {outcome}", flush=True)
    except KeyboardInterrupt as exc:
        kept = f"kept the figures of {', '.join(saved)}" if saved else "no figures kept"
        print(f"interrupted ({exc or 'Ctrl-C'}): cleaning up; {kept}", file=sys.stderr, flush=True)
        return 130
    finally:
        suites.cleanup()  # labs down, temporary projects removed (also after Ctrl-C)
    if not args.no_report and done:
        print(f"wrote {args.report} and {args.results}")
    for bench in done:
        if bench.complete:
            medians = ", ".join(f"{k}: {statistics.median(v):.2f} s" for k, v in bench.samples.items())
            print(f"  {bench.name}: {medians}")
    return status


if __name__ == "__main__":
    sys.exit(main())
