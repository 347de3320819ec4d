"""Results the faked truck tier returns in the lifecycle's unit tests (shared by several test modules)."""

from __future__ import annotations

from truckctl.truck.events import Change, HostEvent, HostStats, TruckRunResult


def truck_result(check: bool, changes: list[Change], unreachable: bool = False) -> TruckRunResult:
    """A run over truck-a-gw (changed once per change) and truck-a-hv1 (unreachable if asked)."""
    hosts = {"truck-a-gw": HostStats(ok=30, changed=len(changes)),
             "truck-a-hv1": HostStats(ok=17, unreachable=int(unreachable))}
    return TruckRunResult(status="successful", rc=4 if unreachable else 0, check=check, hosts=hosts,
                          changes=changes, duration_s=1.0, artifacts_dir="/a",
                          failures=[HostEvent("truck-a-hv1", "Gathering", "unreachable", "timed out")]
                          if unreachable else [])
