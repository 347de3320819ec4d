"""The portal in a real browser against the lab: headless Chromium (Debian's package) driven by
Playwright, the portal started as `truckctl portal` on loopback, the lab converged.

Verified live, without reloading the page: every truck and node shown healthy; truck-a's uplink
cable pulled shows as ONE incident (uplink-down, on truck-a, its stale streams under it) within the
race-day limit (5 s, plus the portal's poll and 2 s to the screen), and plugging it back resolves it
on screen; a run started from the CLI appears in the run history and has its own page; the page fits a
390-pixel-wide phone. Screenshots go to test-artifacts/portal/ (git-ignored).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO
from tests.lab.harness import STAGE, Lab
from tests.lab.runs import NODES, ensure_converged, environment, truckctl
from truckctl.lab import api

pytestmark = pytest.mark.lab

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "portal"
PROBLEM_WAIT_MS = 90_000  # stale after 20 s at the stand-in, then a 2 s poll: generous on 2 shared cores
RECOVER_WAIT_MS = 120_000
INCIDENT_WAIT_MS = 5_000 + 2_000 + 2_000 + 3_000  # the cable's 5 s, a poll, 2 s to the screen, a probe
RESOLVED_WAIT_MS = 10_000 + 2_000 + 2_000 + 3_000  # resolved within 10 s, then the same way to the screen


@pytest.fixture(scope="module")
def converged(lab: Lab) -> Lab:
    ensure_converged(lab)
    return lab


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/api/snapshot")
        return connection.getresponse().status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def portal(converged: Lab, request: pytest.FixtureRequest) -> str:
    """`truckctl portal stage-1` on a free loopback port, stopped by its PID at the end."""
    port = _free_port()
    env = {k: v for k, v in environment().items() if k != "TRUCKCTL_PORTAL_TOKEN"}
    log = (ARTIFACTS / "portal.log")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    handle = log.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "truckctl", "-C", str(converged.project.root), "portal", STAGE,
                             "--listen", f"127.0.0.1:{port}"], stdout=handle, stderr=subprocess.STDOUT, env=env)

    def stop() -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        handle.close()

    request.addfinalizer(stop)
    deadline = time.monotonic() + 60
    while not _answers(port):
        assert proc.poll() is None, f"the portal exited: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "the portal did not answer within 60 s"
        time.sleep(0.3)
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"the browser tests need Debian's chromium ({CHROMIUM}): apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, portal: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(portal)
    page.wait_for_selector("#topology svg [data-node]", timeout=60_000)
    page.evaluate("window.__sameDocument = 'yes'")  # gone if the page ever reloads
    yield page
    context.close()
    assert not errors, f"the page logged errors: {errors}"


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def all_healthy_js() -> str:
    return ("() => document.querySelectorAll('#topology [data-node][data-state=\"ok\"]').length === "
            f"{len(NODES)} && document.querySelector('[data-problems=\"none\"]') !== null "
            "&& document.getElementById('verdict').textContent === 'HEALTHY'")


def test_the_page_shows_every_truck_and_node_healthy(page: Any) -> None:
    page.wait_for_function(all_healthy_js(), timeout=RECOVER_WAIT_MS)
    shown = page.eval_on_selector_all("#topology [data-node]", "nodes => nodes.map(n => n.dataset.node)")
    assert sorted(shown) == NODES
    trucks = page.eval_on_selector_all("#topology [data-truck]",
                                       "ts => ts.map(t => [t.dataset.truck, t.dataset.state])")
    assert sorted(trucks) == [["truck-a", "ok"], ["truck-b", "ok"]]
    cards = page.eval_on_selector_all("#nodes .node-card", "cs => cs.map(c => c.textContent)")
    assert len(cards) == len(NODES) and all("all " in c and "active" in c and "s ago" in c for c in cards)
    assert page.locator("#plots .uplot").count() == 2  # one plot per truck, drawn by the vendored uPlot
    shot(page, "healthy")


def test_a_pulled_uplink_shows_on_truck_a_without_a_reload_and_clears(converged: Lab, page: Any) -> None:
    page.wait_for_function(all_healthy_js(), timeout=RECOVER_WAIT_MS)
    pulled = time.monotonic()
    api.set_uplink(converged.project, "truck-a", False)
    try:
        page.wait_for_selector('#incidents .incident[data-kind="uplink-down"][data-truck="truck-a"]',
                               timeout=INCIDENT_WAIT_MS)
        print(f"\ntruck-a's incident on screen {time.monotonic() - pulled:.1f} s after the cable was pulled")
        shown = page.eval_on_selector_all("#incidents .incident", "is => is.map(i => [i.dataset.kind, "
                                          "i.dataset.truck, i.dataset.state])")
        assert shown == [["uplink-down", "truck-a", "open"]], shown  # one incident, truck-b not blamed
        page.wait_for_function(  # telemetry and three heartbeats, once stale, under it (and the evidence's silence)
            "() => ['truck-a: telemetry STALE', 'truck-a-gw: heartbeat STALE', 'truck-a-hv1: heartbeat STALE', "
            "'truck-a-hv2: heartbeat STALE'].every(t => [...document.querySelectorAll('#incidents .incident "
            "li.symptom')].some(li => li.textContent.startsWith(t)))", timeout=PROBLEM_WAIT_MS)
        shown = page.eval_on_selector_all("#incidents .incident", "is => is.map(i => i.dataset.kind)")
        assert shown == ["uplink-down"], shown
        groups = page.eval_on_selector_all("#problems [data-truck]", "gs => gs.map(g => g.dataset.truck)")
        assert groups == ["truck-a"], groups
        kinds = page.eval_on_selector_all("#problems li", "ls => ls.map(l => l.dataset.kind)")
        assert kinds.count("incident") == 1 and set(kinds) <= {"incident", "alarm"}, kinds
        assert page.evaluate("window.__sameDocument") == "yes"
        shot(page, "truck-a-uplink-pulled")
    finally:
        api.set_uplink(converged.project, "truck-a", True)
    plugged = time.monotonic()
    page.wait_for_selector('[data-incidents="none"]', timeout=RESOLVED_WAIT_MS)
    print(f"incident resolved on screen {time.monotonic() - plugged:.1f} s after the cable was plugged back")
    page.wait_for_function(all_healthy_js(), timeout=RECOVER_WAIT_MS)
    print(f"cleared on screen {time.monotonic() - plugged:.1f} s after the cable was plugged back")
    assert page.evaluate("window.__sameDocument") == "yes"
    shot(page, "truck-a-uplink-restored")


def test_the_run_history_shows_a_run_started_from_the_cli(converged: Lab, page: Any) -> None:
    code, document, stderr = truckctl(converged, "up", STAGE, "--tier", "cloud", "--yes")
    assert code == 0, json.dumps(document["errors"]) + stderr[-2000:]
    run_id = document["result"]["run_id"]
    link = page.locator(f'#runs a[data-run="{run_id}"]')
    link.wait_for(timeout=30_000)  # arrives with a live update: no reload
    assert page.evaluate("window.__sameDocument") == "yes"
    link.click()
    page.wait_for_function(f"() => document.getElementById('run-title').textContent === '{run_id}'",
                           timeout=30_000)
    assert page.locator("#run-status").text_content() == "ok (exit 0)"
    steps = page.eval_on_selector_all("#run-steps td:first-child", "cells => cells.map(c => c.textContent)")
    assert "cloud" in steps
    shot(page, "run-page")


def test_the_page_fits_a_390_pixel_phone(browser: Any, portal: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    try:
        page.goto(portal)
        page.wait_for_selector("#topology svg [data-node]", timeout=60_000)
        page.wait_for_selector("#plots .uplot", timeout=30_000)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px phone"
        shot(page, "phone-390")
    finally:
        context.close()

