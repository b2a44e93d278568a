"""Packaging: the repo's top-level program folders ship under one import namespace, `tandem`.

The folders stay where a reader expects them (gateway/ cloud/ wire/ tools/); setuptools
maps each onto `tandem.<folder>`, so an installed environment gains only `tandem`.
Metadata, dependencies and entry points are in setup.cfg.
"""
from pathlib import Path

from setuptools import setup

PROGRAMS = ("wire", "gateway", "cloud", "tools")


def namespaced_packages() -> list[str]:
    """Every package under the program folders, named as installed (tandem.<folder>...)."""
    found = []
    for program in PROGRAMS:
        for init in sorted(Path(program).rglob("__init__.py")):
            found.append(".".join(("tandem", *init.parent.parts)))
    return found


setup(
    packages=namespaced_packages(),
    package_dir={f"tandem.{program}": program for program in PROGRAMS},
)
