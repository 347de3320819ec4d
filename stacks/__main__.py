"""Entry point of the Pulumi program: build the race's cloud (the stack is named after the race id;
its config `stage` is the day).

Run by the Pulumi CLI (`pulumi preview -s gdf27 -c stage=stage-1`), by truckctl's Automation API engine, and by
truckctl's offline plan under mocks. The project directory is the parent of stacks/.
"""

import sys
from pathlib import Path

import pulumi

# Not resolved: a project whose stacks/ is a link to another checkout's (bench/projects.py clones) keeps
# its own inventory.
STACKS_DIR = Path(__file__).absolute().parent
if str(STACKS_DIR) not in sys.path:  # runpy (offline plan) does not add the program's directory
    sys.path.insert(0, str(STACKS_DIR))

from race_cloud.program import build_stack  # noqa: E402

build_stack(STACKS_DIR.parent, pulumi.get_stack())
