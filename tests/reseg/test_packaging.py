"""The wheel ships every engine package: setup.cfg lists its packages by hand, and a package missing there
imports from a source checkout but not from the installed wheel (where users run it)."""

from __future__ import annotations

import configparser
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src"


def test_setup_cfg_lists_every_package_of_the_engine():
    config = configparser.ConfigParser()
    config.read(SOURCE.parent / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    packages = {".".join(init.parent.relative_to(SOURCE).parts) for init in (SOURCE / "reseg").rglob("__init__.py")}
    assert packages - listed == set(), "add these to setup.cfg [options] packages"
