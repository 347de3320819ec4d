"""The rootfs cache: outside the repository, keyed by its recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from truckctl.lab import rootfs


def test_cache_lives_under_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert rootfs.base_path().parent == tmp_path / "truckctl"
    assert rootfs.base_path().name == f"rootfs-{rootfs.recipe_hash(rootfs.BASE_RECIPE)}"
    assert rootfs.standin_layer().parent.parent == tmp_path / "truckctl"


def test_cache_defaults_to_the_users_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert rootfs.cache_root() == tmp_path / ".cache" / "truckctl"


def test_a_changed_recipe_names_a_new_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    before_base, before_standin = rootfs.base_path(), rootfs.standin_layer()
    changed = {**rootfs.BASE_RECIPE, "include": [*rootfs.BASE_RECIPE["include"], "less"]}  # type: ignore[misc]
    monkeypatch.setattr(rootfs, "BASE_RECIPE", changed)
    assert rootfs.base_path() != before_base
    assert rootfs.standin_layer() != before_standin  # the stand-in layer is rebuilt over a new base


def test_recipe_installs_what_nodes_need() -> None:
    include = rootfs.BASE_RECIPE["include"]
    assert isinstance(include, list)
    for package in ("systemd-sysv", "openssh-server", "python3", "dbus"):
        assert package in include
    assert rootfs.STANDIN_PACKAGES == ["mosquitto", "python3-paho-mqtt"]
