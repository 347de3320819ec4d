"""Race-day diagnosis (issue 14, DESIGN section 12): topology from the configuration, evidence per
hop, one incident per root cause with the symptoms it explains.

Pure and standard-library only, on purpose: the lab's cloud stand-in runs this very package inside
its node (Debian's python3, no truckctl installed), so the cloud side and `truckctl status` reach
the same verdict from the same evidence. Modules import each other relatively, never truckctl.

- `model`: incident kinds, Incident, Symptom;
- `topology`: the dependency model (feed -> broker -> bridge -> uplink -> cloud; node -> LAN -> gateway);
- `evidence`: the gateway agent's document (CONTRACT-14), parsed with bounds and shape checks;
- `diagnose`: observations (evidence, direct checks, the cloud side's view) -> incidents;
- `book`: incidents over time (opened / resolved, deduplicated) -> notifications to send.
"""
