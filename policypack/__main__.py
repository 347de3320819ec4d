"""The project's policy rules as a CrossGuard policy pack: the same functions the offline plan runs."""

from pulumi_policy import EnforcementLevel, PolicyPack, StackValidationPolicy

from truckctl.cloud.crossguard import stack_validation
from truckctl.cloud.policy import RULES

PolicyPack(
    name="truckctl-race-policies",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[StackValidationPolicy(name=rule.name, description=rule.description, validate=stack_validation(rule))
              for rule in RULES],
)
