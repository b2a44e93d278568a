"""Specification of the package boundaries: one `tandem` namespace, and the layer contracts.

The program folders (wire/ gateway/ cloud/ tools/) install as `tandem.<folder>`
(setup.py); an environment with Tandem installed gains no other top-level name.
pyproject.toml's [tool.importlinter] holds the layer contracts (wire imports
nothing of ours, gateway and cloud are independent, neither imports tools).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from tests.nodeproc import REPO

PROGRAMS = ("wire", "gateway", "cloud", "tools")
# What setup.py and setup.cfg read, the rest of the repo is not needed for a wheel.
BUILD_INPUTS = ("setup.py", "setup.cfg", "pyproject.toml", "README.md", *PROGRAMS)


def _sources() -> set[str]:
    """Every CPython module of the program folders, named as installed."""
    return {str(PurePosixPath("tandem", *path.relative_to(REPO).parts))
            for program in PROGRAMS for path in (REPO / program).rglob("*.py")
            if "__pycache__" not in path.parts}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The wheel built from a copy of the repo (so the build leaves nothing in the tree)."""
    tree = tmp_path_factory.mktemp("tree")
    for name in BUILD_INPUTS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tree / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, tree / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(out), str(tree)],
                   check=True, timeout=240, capture_output=True)
    (built,) = out.glob("*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


@pytest.mark.slow
def test_the_wheel_holds_only_the_tandem_namespace(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/", 1)[0] for name in wheel.namelist()}
    dist_info = {top for top in tops if top.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert tops - dist_info == {"tandem"}


@pytest.mark.slow
def test_every_module_and_its_data_are_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    # a folder without __init__.py is missing from setup.py's package list, hence here
    assert _sources() - names == set()
    # what the programs read at run time: templates, vendored page assets, the API description
    folders = ("cloud/templates", "cloud/static", "gateway/installer/static")
    data = {"tandem/cloud/openapi.yaml", "tandem/cloud/db/migrations/script.py.mako",
            *(f"tandem/{f.relative_to(REPO)}" for folder in folders
              for f in (REPO / folder).rglob("*") if f.is_file())}
    assert len(data) > 10 and data - names == set()


@pytest.mark.parametrize("program", PROGRAMS)
def test_only_the_namespaced_name_imports_outside_the_repo(program: str, tmp_path: Path) -> None:
    probe = ("import importlib.util, sys\n"
             f"print(importlib.util.find_spec({program!r}) is None,"
             f" importlib.util.find_spec('tandem.{program}') is not None)")
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, check=True,
                           capture_output=True, text=True, timeout=60)
    assert found.stdout.split() == ["True", "True"], f"`import {program}` must fail"


def test_every_folder_of_modules_is_a_package() -> None:
    # setup.py lists the folders holding an __init__.py: a folder without one is left out
    # of the wheel (test_every_module_and_its_data_are_in_the_wheel proves it on the wheel).
    for program in PROGRAMS:
        for folder in [REPO / program, *(REPO / program).rglob("*")]:
            if folder.is_dir() and any(folder.glob("*.py")):
                assert (folder / "__init__.py").exists(), f"{folder} has modules, no __init__.py"


def test_the_layer_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
