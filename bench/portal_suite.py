"""The portal's benchmark (issue 15): first meaningful render, event-to-screen latency, 50 viewers.

Against a converged lab of its own (a stage-1 clone on 10.77/10.78, uplink 100.64.57.0/24), the
portal started as `truckctl portal stage-1` on a free loopback port, headless Chromium (Debian's)
driven by Playwright:

- first meaningful render: a fresh browser context opens the page; timed until the topology
  picture is drawn (its nodes are in the SVG) - goal <= 1 s;
- event to screen: on an open page, the time from the end of a poll (the snapshot's `at`, when the
  portal has seen the new state) to the page having rendered it (the page's own clock, same machine)
  - goal <= 2 s; recorded as a part of the step, whose wall time is the wait for the next poll;
- 50 viewers: 50 plain HTTP clients on 127.0.0.1 hold /api/events open for 20 s, each reading every
  event; the portal process's CPU (utime+stime from /proc, and separately its children: the SSH
  probes of status) and resident memory (VmRSS) over that window - goals < 10 % of a core, < 150 MiB;
- page weight: the bytes of the page and every asset it loads (goal <= 500 KB).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness import Benchmark, Skip, Step
from projects import TempProject, stage1_clone

CHROMIUM = "/usr/bin/chromium"
VIEWERS = 50
VIEWERS_WINDOW_S = 20.0
OCTET, UPLINK = 77, 57
TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_cpu(pid: int) -> tuple[float, float]:
    """(own CPU s, waited-for children's CPU s) of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PortalRig:
    """The lab, the portal process and the browser, shared by the benchmark's steps."""

    def __init__(self, bench: Benchmark) -> None:
        self.bench = bench
        self.project: TempProject | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.playwright: Any = None
        self.browser: Any = None
        self.page: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def before(self) -> None:
        from suites import wait_for_headroom

        if not os.access(CHROMIUM, os.X_OK):
            raise Skip(f"needs Debian's chromium at {CHROMIUM}")
        wait_for_headroom(6, self.bench)
        self.project = stage1_clone("portal", OCTET, UPLINK)
        start = time.perf_counter()
        self.project.lab_up()
        self.project.converge()
        self.bench.note(f"set-up (lab up + first converge, untimed) {time.perf_counter() - start:.0f} s")
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if k != "TRUCKCTL_PORTAL_TOKEN"}
        self.proc = subprocess.Popen([sys.executable, "-m", "truckctl", "-C", str(self.project.root), "portal",
                                      "stage-1", "--listen", f"127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while not self._answers():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the portal did not start")
            time.sleep(0.3)
        from playwright.sync_api import sync_playwright

        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        self.page = self.browser.new_page()
        self.page.goto(self.url)
        self.page.wait_for_selector("#topology svg [data-node]", timeout=60_000)
        self.bench.note(f"page weight: {self.page_weight() / 1024:.0f} KB (goal <= 500 KB)")

    def _answers(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            connection.request("GET", "/api/snapshot")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def after(self) -> None:
        for action in (lambda: self.browser.close(), lambda: self.playwright.stop()):
            with contextlib.suppress(Exception):  # a browser that failed to start has nothing to close
                action()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
        if self.project is not None:
            self.project.lab_down()
            self.project.close()

    def page_weight(self) -> int:
        sizes: list[int] = []
        context = self.browser.new_context()
        page = context.new_page()

        def count(response: Any) -> None:
            if "/api/events" not in response.url:
                with contextlib.suppress(Exception):  # redirects have no body
                    sizes.append(len(response.body()))

        page.on("response", count)
        page.goto(self.url)
        page.wait_for_selector("#plots .uplot", timeout=60_000)
        context.close()
        return sum(sizes)

    # ---- steps ------------------------------------------------------------------------------------

    def first_render(self) -> None:
        context = self.browser.new_context()
        try:
            page = context.new_page()
            page.goto(self.url)
            page.wait_for_selector("#topology svg [data-node]", timeout=30_000)
        finally:
            context.close()

    def event_to_screen(self) -> None:
        before = self.page.evaluate("document.body.dataset.snapshot")
        self.page.wait_for_function(f"() => document.body.dataset.snapshot !== '{before}'", timeout=30_000)
        rendered_ms = float(self.page.evaluate("Number(document.body.dataset.rendered)"))
        seen_s = float(self.page.evaluate("Number(document.body.dataset.snapshot)"))
        self.bench.record("event to screen (poll done -> rendered)", rendered_ms / 1000 - seen_s)

    def viewers(self) -> None:
        assert self.proc is not None
        stop = time.monotonic() + VIEWERS_WINDOW_S
        events = [0] * VIEWERS

        def viewer(i: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            connection.request("GET", "/api/events")
            response = connection.getresponse()
            while time.monotonic() < stop:
                line = response.readline()
                if not line:
                    break
                events[i] += line.startswith(b"event: snapshot")
            connection.close()

        threads = [threading.Thread(target=viewer, args=(i,), daemon=True) for i in range(VIEWERS)]
        for thread in threads:
            thread.start()
        time.sleep(2)  # every viewer connected
        own0, kids0 = _proc_cpu(self.proc.pid)
        t0 = time.monotonic()
        rss = [_rss_mib(self.proc.pid)]
        while time.monotonic() < stop:
            time.sleep(1)
            rss.append(_rss_mib(self.proc.pid))
        own1, kids1 = _proc_cpu(self.proc.pid)
        elapsed = time.monotonic() - t0
        for thread in threads:
            thread.join(15)
        own_pct, kids_pct = 100 * (own1 - own0) / elapsed, 100 * (kids1 - kids0) / elapsed
        self.bench.note(f"{VIEWERS} viewers over {elapsed:.0f} s: portal process {own_pct:.1f} % of a core "
                        f"(goal < 10 %), its SSH probes (children) {kids_pct:.1f} %; RSS max {max(rss):.0f} MiB "
                        f"(goal < 150 MiB); events per viewer min {min(events)} max {max(events)}")
        self.bench.record("portal CPU % of a core, 50 viewers (as s per 100 s)", own_pct)


def portal_benchmark() -> Benchmark:
    bench = Benchmark("portal", "`truckctl portal stage-1` on a converged lab: first render, event to screen, "
                      "50 concurrent SSE viewers (CPU, RSS), page weight", [], compare=False, needs_root=True,
                      slow=True, miss_reason="The page waits for the first snapshot over SSE; status itself "
                      "(6 SSH probes and the stand-in) runs in the poller, once for every viewer.")
    rig = PortalRig(bench)
    bench.steps = [Step("first meaningful render (topology drawn)", call=rig.first_render, goal_s=1.0),
                   Step("wait for the next live event (<= one poll)", call=rig.event_to_screen),
                   Step(f"{VIEWERS} SSE viewers held {VIEWERS_WINDOW_S:g} s", call=rig.viewers)]
    bench.before, bench.after = rig.before, rig.after
    return bench
