"""Entry point of the Pulumi program: build the cloud tier of the stage named by the stack.

Run by the Pulumi CLI (`pulumi preview -s stage-1`), by truckctl's Automation API engine, and by
truckctl's offline plan under mocks. The project directory is the parent of stacks/.
"""

import sys
from pathlib import Path

import pulumi

STACKS_DIR = Path(__file__).resolve().parent
if str(STACKS_DIR) not in sys.path:  # runpy (offline plan) does not add the program's directory
    sys.path.insert(0, str(STACKS_DIR))

from race_cloud.program import build_stack  # noqa: E402

build_stack(STACKS_DIR.parent, pulumi.get_stack())
