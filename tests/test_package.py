"""`pip install .` makes a working outreach anywhere: a wheel in a clean virtual
environment runs the demo from `/`, with its templates, samples and starter config."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

IGNORED = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", ".*_cache")


def _source_copy(target: Path) -> Path:
    """The checkout's files (tracked or new, not ignored) in a fresh folder, as a clone would have them.

    Building in the checkout itself would reuse its `build/` folder, where files
    deleted from the project linger and hide a packaging mistake.
    """
    if shutil.which("git") and (ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        for name in filter(None, (entry.decode() for entry in listed)):
            source, copy = ROOT / name, target / name
            if not source.exists() and not source.is_symlink():
                continue  # deleted in the work tree, not yet in the index
            copy.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                copy.symlink_to(os.readlink(source))
            else:
                shutil.copy2(source, copy)
    else:
        shutil.copytree(ROOT, target, symlinks=True, ignore=IGNORED)
    return target


def _run(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A wheel built from a copy of the checkout and installed in a new venv: (venv, wheel)."""
    base = tmp_path_factory.mktemp("package")
    source = _source_copy(base / "source")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", base / "dist", source], base)
    [wheel] = (base / "dist").glob("outreach-*.whl")
    _run([sys.executable, "-m", "venv", base / "venv"], base)
    _run([base / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet", wheel], base)
    return base / "venv", wheel


def test_the_wheel_carries_the_templates_samples_and_starter_config(installed: tuple[Path, Path]) -> None:
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "templates").rglob("*.j2"):
        assert f"outreach/data/templates/{template.relative_to(ROOT / 'templates').as_posix()}" in names
    assert "outreach/data/schedules.yaml" in names
    assert {"outreach/data/sample/portal-vi.rss", "outreach/data/sample/portal-en.atom"} <= names
    assert "outreach/__init__.py" in names
    assert "outreach/migrations/versions/0001_initial_tables.py" in names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_the_installed_package_holds_copies_of_the_editable_sources(installed: tuple[Path, Path]) -> None:
    venv, _ = installed
    [site] = (venv / "lib").glob("python3*/site-packages")
    data = site / "outreach" / "data"
    assert not (data / "templates").is_symlink()
    assert filecmp.cmp(data / "schedules.yaml", ROOT / "schedules.yaml", shallow=False)

    def tree(folder: Path) -> dict[str, bytes]:
        return {f.relative_to(folder).as_posix(): f.read_bytes() for f in folder.rglob("*") if f.is_file()}

    assert tree(data / "templates") == tree(ROOT / "templates")
    assert not any(f.is_symlink() for f in (data / "templates").rglob("*"))


def test_the_installed_demo_runs_from_the_root_folder(installed: tuple[Path, Path], tmp_path: Path) -> None:
    venv, _ = installed
    env = {"PATH": os.environ.get("PATH", ""), "TMPDIR": str(tmp_path), "COLUMNS": "100", "HOME": str(tmp_path)}
    output = _run([venv / "bin" / "outreach", "demo"], Path("/"), env)
    assert "sample-portal-vi: 16 new items of 16 in the feed" in output
    assert "sent 17, failed 0" in output
    again = next(line for line in output.splitlines() if line.startswith("Look again with: "))
    argv = again.removeprefix("Look again with: ").split()
    report = _run(argv, Path("/"), env)
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in report.splitlines() if line.startswith("│")]
    assert ["total", "17", "33", "17", "0", "17", "0"] in [row[:7] for row in rows]
    html = next(line for line in output.splitlines() if line.startswith("HTML report"))
    assert Path(html.rsplit(": ", 1)[1]).read_text(encoding="utf-8").startswith("<!")
    starter = _run([venv / "bin" / "outreach", "init", "--config-example"], Path("/"), env)
    assert starter == (ROOT / "schedules.yaml").read_text(encoding="utf-8")
