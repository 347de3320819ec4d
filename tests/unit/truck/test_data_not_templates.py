"""A real ansible-playbook run through truckctl's runner facade: a Jinja expression accepted in the
configuration (race name, an ops user's key comment), in a cloud output (extra vars) and in a secret
(the vault file) is never run on the controller, and lands literally in the files Ansible writes; text
that plain YAML reads as something else (an ops user "null", "yes", a date) stays text.

The "node" is the controller itself (connection local): the inventory, extra vars and vault file
are the ones `up` hands to Ansible; only the playbook is this test's, writing the values the way the
common role writes authorized_keys (content) and a templated config file (template module).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.helpers import REPO, FakeConnection, make_cloud
from truckctl.cloud.outputs import TruckAccess
from truckctl.config.loader import load_stage
from truckctl.project import Project
from truckctl.truck.plan import build_plan
from truckctl.truck.runner import MITOGEN_ENV, RunnerSettings, run_plan

PLAYBOOK = """\
- name: Write what truckctl handed over
  hosts: truck-a-gw
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: {python}
  tasks:
    - name: authorized_keys the way the common role writes it
      ansible.builtin.copy:
        dest: {out}/authorized_keys
        content: "{{{{ ops_users[0].ssh_public_key ~ '\\n' }}}}"
        mode: "0600"
    - name: a templated file
      ansible.builtin.template:
        src: values.j2
        dest: {out}/values.json
        mode: "0600"
"""
TEMPLATE = ("{{ {'race_name': race_name, 'ca_pem': cloud_ca_pem, 'key': cloud_truck_keys[truck_name],"
            " 'description': role_name, 'users': ops_users | map(attribute='name'), 'date': stage_date} | to_json }}\n")


@pytest.mark.parametrize("mitogen", ["1", "0"], ids=["mitogen", "linear"])
def test_jinja_in_the_configuration_is_written_literally_never_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   mitogen: str) -> None:
    marker = Path(f"/tmp/PWNED-{uuid.uuid4().hex}")
    payload = f"{{{{ lookup('pipe', 'touch {marker}') }}}}"
    project = tmp_path / "project"
    shutil.copytree(REPO / "inventory", project / "inventory")
    race_file = project / "inventory" / "race.yaml"
    text = race_file.read_text()
    second_user = '\n  - name: "yes"\n    ssh_public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILPNa1l4wn7gh+jGJ1y1snS1'
    race_file.write_text(text.replace("  name: Giro di Finzione 2027", f'  name: "{payload}"')
                         .replace(" ops@giro-di-finzione", f" ops@giro {payload}{second_user}")
                         .replace("- name: raceops", '- name: "null"'))
    stage = load_stage(Project(project), "stage-1")  # validate accepts them: free text, valid user names
    assert stage.race.name == payload and [user.name for user in stage.ops_users] == ["null", "yes"]

    base = make_cloud(stage)
    trucks = {name: TruckAccess.model_validate({**access.model_dump(), "private_key_pem": SecretStr(payload)})
              for name, access in base.trucks.items()}
    cloud = make_cloud(stage, ca_pem=payload, trucks=trucks)
    playbooks = tmp_path / "playbooks"
    out = tmp_path / "node"
    (playbooks / "templates").mkdir(parents=True)
    out.mkdir()
    (playbooks / "ansible.cfg").write_text("[defaults]\ngathering = explicit\n")
    (playbooks / "site.yml").write_text(PLAYBOOK.format(python=shutil.which("python3"), out=out))
    (playbooks / "templates" / "values.j2").write_text(TEMPLATE)
    plan = build_plan(playbooks, stage, cloud, FakeConnection(), "lab", limit="truck-a-gw")

    monkeypatch.setenv(MITOGEN_ENV, mitogen)
    result = run_plan(plan, RunnerSettings(tmp_path / "state"))

    assert result.rc == 0, result.failures
    assert not marker.exists(), "a lookup from the configuration ran on the controller"
    assert (out / "authorized_keys").read_text() == stage.ops_users[0].ssh_public_key + "\n"
    assert payload in (out / "authorized_keys").read_text()
    written = json.loads((out / "values.json").read_text())
    assert written == {"race_name": payload, "ca_pem": payload, "key": payload, "description": "gateway",
                       "users": ["null", "yes"], "date": stage.info.date.isoformat()}
