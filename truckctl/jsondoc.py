"""The type of a document that crosses a boundary as JSON or YAML, whose keys are another tool's or
another process's contract, not truckctl's: Ansible inventory, variables and events, Pulumi inputs and
IAM policies, the journal's lines and state files, the stand-in's and the portal's HTTP documents, the
JSON envelope's `result`. truckctl's own results between its layers are typed (frozen dataclasses,
e.g. `truckctl.lifecycle.steps.StepResult`); this name marks where a free-form document is meant."""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]
