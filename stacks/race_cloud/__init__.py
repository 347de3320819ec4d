"""Components of the race's cloud tier. Each module has a `build(config, ...)` function that
creates one component (a ComponentResource grouping its resources) and returns what later
components need. `program.build_stack` wires them together and exports the stack outputs."""
