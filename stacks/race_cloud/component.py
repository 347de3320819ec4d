"""A thin ComponentResource: groups a concern's resources (the offline plan groups by it too)."""

from __future__ import annotations

from typing import Any

import pulumi

TYPE_PREFIX = "truckctl:race:"


class Component(pulumi.ComponentResource):
    def __init__(self, kind: str, name: str, provider: pulumi.ProviderResource) -> None:
        # Children inherit the explicit regional provider through their parent.
        super().__init__(TYPE_PREFIX + kind, name, None, pulumi.ResourceOptions(providers=[provider]))

    def opts(self, **options: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **options)

    def invoke_opts(self) -> pulumi.InvokeOutputOptions:
        return pulumi.InvokeOutputOptions(parent=self)
