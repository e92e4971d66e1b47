"""A bare Debian/Ubuntu with Python 3.11 runs everything: no method or metric needs a system library its wheels lack.

Two checks. (1) Every native extension of every distribution that requirements.txt pulls in
(the whole dependency closure) links only against libraries inside the wheels themselves or
the C/C++ runtime every Linux has (glibc, libstdc++, libgcc_s, zlib): Open3D's wheel, which
links libusb and libGL, fails it. (2) In a subprocess where the system libraries a desktop
install brings but a bare one lacks are hidden (a private mount namespace that binds /dev/null
over them), every project module imports and the ray-casting, decimation, NeRF meshing and
volume-IoU paths run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# What a bare Debian/Ubuntu with Python has: glibc's libraries, the GCC runtime, zlib.
BASE_LIBRARIES = (
    "linux-vdso.so",
    "ld-linux",
    "libc.so",
    "libm.so",
    "libmvec.so",
    "libdl.so",
    "librt.so",
    "libpthread.so",
    "libutil.so",
    "libgcc_s.so",
    "libstdc++.so",
    "libz.so",
)
# Libraries a desktop or CI image often has and a bare one does not (Open3D's wheel links the first two).
DESKTOP_LIBRARIES = ("libusb-1.0.so.0", "libGL.so.1", "libEGL.so.1", "libvulkan.so.1", "libX11.so.6", "libgomp.so.1")


def requirement_closure(requirements: Path) -> list[str]:
    """Names of the installed distributions requirements.txt pulls in, its own lines and their dependencies."""
    todo = [
        Requirement(line.split("#")[0].strip()).name
        for line in requirements.read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    seen: dict[str, str] = {}
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = name
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(seen.values())


def foreign_libraries(shared_object: Path, bundled: set[str]) -> set[str]:
    """System libraries ``shared_object`` needs beyond the base set (``bundled``: names its wheel ships)."""
    out = subprocess.run(["ldd", str(shared_object)], capture_output=True, text=True).stdout
    foreign = set()
    for line in out.splitlines():
        parts = line.split()
        if not parts:
            continue
        if "not found" in line:
            if parts[0] not in bundled:  # a wheel's own libs resolve through its caller's RPATH
                foreign.add(parts[0])
        elif "=>" in line and len(parts) >= 3:
            target = parts[2]
            if "site-packages" in target or "dist-packages" in target:
                continue
            if not Path(target).name.startswith(BASE_LIBRARIES):
                foreign.add(Path(target).name)
    return foreign


@pytest.fixture(scope="module")
def ldd():
    if shutil.which("ldd") is None:
        pytest.skip("ldd is not available on this host")


def test_the_check_flags_a_system_library(ldd):
    ssl = Path(sysconfig.get_paths()["stdlib"]) / "lib-dynload"
    modules = sorted(ssl.glob("_ssl*.so"))
    if not modules:
        pytest.skip("this Python's _ssl is built in, not a shared object linking libssl")
    assert any(name.startswith(("libssl", "libcrypto")) for name in foreign_libraries(modules[0], set()))


def test_no_wheel_needs_a_system_library(ldd):
    names = requirement_closure(ROOT / "requirements.txt")
    assert {"torch", "trimesh", "embreex", "fast-simplification", "pycolmap"} <= {n.lower() for n in names}
    found = {}
    for name in names:
        dist = metadata.distribution(name)
        files = list(dist.files or [])
        bundled = {f.name for f in files}
        for f in files:
            if f.name.endswith(".so") or ".so." in f.name:
                foreign = foreign_libraries(Path(dist.locate_file(f)), bundled)
                if foreign:
                    found[f"{name}: {f}"] = sorted(foreign)
    assert not found, f"wheels that need system libraries: {found}"


PROBE = r"""
import importlib, pkgutil, sys
import numpy as np
import trimesh

for package in ("methods", "eval", "ui"):
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        importlib.import_module(info.name)
importlib.import_module("app")
assert "open3d" not in sys.modules, "a project module imported open3d"

from methods.base import Mesh
from methods.nerf.mesh import decimate, visible_faces
from eval.judging.metrics import geometry

sphere = trimesh.creation.icosphere(4)
v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
c2w = np.eye(4)[None].repeat(1, 0)
c2w[0, 2, 3] = 3.0  # on +Z looking at the origin (OpenGL: -Z forward)
K = np.array([[[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]]])
seen = visible_faces(v, f, c2w, K, 64, 64)
assert 0.2 < seen.mean() < 0.6, seen.mean()  # about the front half
dv, df = decimate(v, f, 500)
assert 400 <= len(df) <= 500, len(df)
a = trimesh.creation.box((1, 1, 1))
b = trimesh.creation.box((1, 1, 1))
b.apply_translation((0.5, 0, 0))
iou = geometry.volume_iou(Mesh(a.vertices, a.faces), Mesh(b.vertices, b.faces), n=20_000)
assert abs(iou - 1 / 3) < 0.02, iou
print("bare-machine probe ok")
"""


def _hidden_command() -> tuple[list[str], list[str]]:
    """The probe's command line, inside a mount namespace hiding the desktop libraries present here."""
    libdirs = [Path("/usr/lib/x86_64-linux-gnu"), Path("/lib/x86_64-linux-gnu"), Path("/usr/lib"), Path("/lib")]
    present = sorted({str((d / n).resolve()) for d in libdirs for n in DESKTOP_LIBRARIES if (d / n).exists()})
    probe = [sys.executable, "-c", PROBE]
    if not present:
        return probe, []
    binds = " && ".join(f"mount --bind /dev/null {p}" for p in present)
    return ["unshare", "-m", "sh", "-c", f'{binds} && exec "$@"', "probe", *probe], present


def test_project_runs_with_desktop_libraries_hidden():
    command, hidden = _hidden_command()
    if hidden:
        if shutil.which("unshare") is None:
            pytest.skip(f"cannot hide {hidden}: no unshare")
        trial = subprocess.run(
            ["unshare", "-m", "mount", "--bind", "/dev/null", hidden[0]], capture_output=True, text=True
        )
        if trial.returncode != 0:
            pytest.skip(f"cannot hide {hidden} (a private mount namespace needs root): {trial.stderr.strip()}")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"hidden: {hidden}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert "bare-machine probe ok" in done.stdout
