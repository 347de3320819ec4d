"""Hand data to Ansible as data: every string that could be a template marked `!unsafe`, every type kept.

Ansible templates every string it loads from an inventory or a vars file (ansible-core 2.19 trusts
files; JSON extra vars and `-e @file` are trusted too): a `{{ lookup('pipe', ...) }}` in a race name
would run on the controller. Everything truckctl renders for Ansible (the inventory, the extra vars,
the vault-encrypted secrets) is written by `dump` instead: YAML whose every string value is in double
quotes, with every non-ASCII or non-printable character escaped, and carries Ansible's `!unsafe` tag
(but see below), so the text is one value on one line whatever it holds, and the playbooks see it
literally. Mapping keys are never tagged (Ansible does not template them); they must be text.

Ansible's `!unsafe` ignores the quotes: it resolves the text as a plain YAML 1.1 scalar, so `!unsafe "on"`
loads as True, `"null"` or `""` as None, `"0123"` as 83, `"12:30"` as 750, a date as a date, and `"="`
or `"<<"` does not load at all. A string that plain YAML would not read as a string is therefore written
as a YAML string without `!unsafe`: double-quoted, the `!!str` tag implied (PyYAML leaves it out), kept a
string by Ansible and trusted as a template in 2.19. Such a text is a boolean, null, number, date or
`=`/`<<` to the resolver, so it holds no `{` and templating it is a no-op
(tests/unit/truck/test_data_not_templates.py checks both with a real ansible-playbook run).
"""

from __future__ import annotations

from typing import Any

import yaml

from truckctl.jsondoc import JsonObject

UNSAFE_TAG = "!unsafe"
STR_TAG = "tag:yaml.org,2002:str"


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # each value written out in full: no anchors for Ansible to resolve


def _unsafe_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Ansible resolves an `!unsafe` text like a plain scalar: `!unsafe` for what resolves to a string (and for
    # anything with a `{`, which no other resolver matches), `!!str` (written as just "...") for the rest.
    plain = dumper.resolve(yaml.ScalarNode, value, (True, False))
    return dumper.represent_scalar(UNSAFE_TAG if plain == STR_TAG or "{" in value else STR_TAG, value, style='"')


def _mapping(dumper: yaml.SafeDumper, data: dict[Any, Any]) -> yaml.MappingNode:
    pairs = []
    for key, value in data.items():
        if not isinstance(key, str):
            raise TypeError(f"Ansible data keys must be text, got {type(key).__name__}")
        pairs.append((yaml.ScalarNode(STR_TAG, key, style='"' if _odd(key) else None),
                      dumper.represent_data(value)))
    return yaml.MappingNode("tag:yaml.org,2002:map", pairs, flow_style=False)


def _odd(key: str) -> bool:
    return not key.replace("_", "a").replace("-", "a").isalnum() or not key.isascii()


_Dumper.add_representer(str, _unsafe_str)
_Dumper.add_representer(dict, _mapping)


def dump(data: JsonObject) -> str:
    """YAML for Ansible (inventory or vars file) in which no string is a template."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=False, width=1_000_000)


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor(UNSAFE_TAG, lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


def load(text: str) -> Any:
    """Read back what `dump` wrote (the `!unsafe` strings as plain text, as written)."""
    return yaml.load(text, Loader=_Loader)
