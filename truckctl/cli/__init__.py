"""The thin CLI: parse, call the core, render. Nothing heavy is imported at start-up."""
