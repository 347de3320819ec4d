"""The lab: a stage's trucks as systemd-nspawn nodes on this machine (DESIGN section 6).

The public surface is `truckctl.lab.api`; the other modules each own one concern (names, address
plan, rootfs cache, network, nodes, stand-in, PKI, persisted state).
"""
