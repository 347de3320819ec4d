"""Hand data to Ansible as data: every string marked `!unsafe`, so it is never templated.

Ansible templates every string it loads from an inventory or a vars file (ansible-core 2.19 trusts
files; JSON extra vars and `-e @file` are trusted too): a `{{ lookup('pipe', ...) }}` in a race name
would run on the controller. Everything truckctl renders for Ansible (the inventory, the extra vars,
the vault-encrypted secrets) is written by `dump` instead: YAML whose every string value carries
Ansible's `!unsafe` tag, in double quotes with every non-ASCII or non-printable character escaped, so
the text is one value on one line whatever it holds, and the playbooks see it literally. Mapping keys
are never tagged (Ansible does not template them); they must be text.
"""

from __future__ import annotations

from typing import Any

import yaml

UNSAFE_TAG = "!unsafe"


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # each value written out in full: no anchors for Ansible to resolve


def _unsafe_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(UNSAFE_TAG, value, style='"')


def _mapping(dumper: yaml.SafeDumper, data: dict[Any, Any]) -> yaml.MappingNode:
    pairs = []
    for key, value in data.items():
        if not isinstance(key, str):
            raise TypeError(f"Ansible data keys must be text, got {type(key).__name__}")
        pairs.append((yaml.ScalarNode("tag:yaml.org,2002:str", key, style='"' if _odd(key) else None),
                      dumper.represent_data(value)))
    return yaml.MappingNode("tag:yaml.org,2002:map", pairs, flow_style=False)


def _odd(key: str) -> bool:
    return not key.replace("_", "a").replace("-", "a").isalnum() or not key.isascii()


_Dumper.add_representer(str, _unsafe_str)
_Dumper.add_representer(dict, _mapping)


def dump(data: dict[str, Any]) -> str:
    """YAML for Ansible (inventory or vars file) in which no string is a template."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=False, width=1_000_000)


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor(UNSAFE_TAG, lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


def load(text: str) -> Any:
    """Read back what `dump` wrote (the `!unsafe` strings as plain text)."""
    return yaml.load(text, Loader=_Loader)
