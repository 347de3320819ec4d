"""The cloud tier: Pulumi stacks (aws target), offline plan under mocks, and CloudOutputs."""
