"""The PEP 517 build backend of `pip install .`: difflow's two binaries and its Python package.

`build_wheel` checks the environment's torch first (one clear message for a version the
build cannot use), then runs `cargo build --release --workspace`, the very build that
scripts/setup.sh makes, in the repository's own target folder (an already-built checkout
packs in seconds), and writes a wheel holding

- `difflow` and `difflow-worker` as scripts (pip puts them in the environment's bin/;
  the worker finds libtorch through a `$ORIGIN`-relative rpath, engine/build.rs),
- the NCCL shim, when the engine's build script made one, as `<env>/lib/libdifflow_nccl.so`,
  and the Python tensor bridge of `python` models as `<env>/lib/libdifflow_python.so`
  (the worker looks in `../lib` beside its folder),
- the pure-Python package `difflow` (python/difflow).

The wheel is tagged for this interpreter and platform: the rpath names the environment's
`pythonX.Y` folder, and the metadata pins the torch release the worker links.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = "difflow"
# major.minor of the torch releases the worker builds against: the project's (tch 0.26 is
# generated from it) and the GPU kit's (scripts/gpu_kit.sh patches tch for it).
PIP_TORCH = "2.13"
KIT_TORCH = "2.11"
BINARIES = ("difflow", "difflow-worker")
NCCL_SHIM = "libdifflow_nccl.so"
PYTHON_SHIM = "libdifflow_python.so"


class BuildError(SystemExit):
    """A build that cannot go on; the message says what to do. A SystemExit, so that pip
    shows the message alone rather than under a traceback of this backend."""


# ---- PEP 517 hooks ----


def get_requires_for_build_wheel(config_settings=None):
    return [] if sys.version_info >= (3, 11) else ["tomli>=1.1"]


def get_requires_for_build_sdist(config_settings=None):
    return get_requires_for_build_wheel(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    torch = _checked_torch_version()
    dist_info = Path(metadata_directory) / _dist_info_name()
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(_metadata_text(torch), encoding="utf-8")
    (dist_info / "WHEEL").write_text(_wheel_text(), encoding="utf-8")
    return dist_info.name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    torch = _checked_torch_version()
    binaries, shims = _cargo_build()
    return _write_wheel(Path(wheel_directory), torch, binaries, shims)


def build_sdist(sdist_directory, config_settings=None):
    """The tracked files of the git checkout, with PKG-INFO (no torch pin: it is the wheel's)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--exclude-standard"], cwd=ROOT, capture_output=True
    )
    if listed.returncode != 0:
        raise BuildError(f"an sdist is made from a git checkout; {ROOT} is not one")
    base = f"{NAME}-{_version()}"
    out = Path(sdist_directory) / f"{base}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        for rel in sorted(p for p in listed.stdout.decode().split("\0") if p):
            path = ROOT / rel
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=f"{base}/{rel}", recursive=False)
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        text = _metadata_text(None).encode()
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    return out.name


# ---- torch ----


def supported_versions_text() -> str:
    return (
        f"Supported: torch {PIP_TORCH} (the project's: `pip install . --no-build-isolation`, "
        f"scripts/setup.sh) and torch {KIT_TORCH} (the GPU kit's: scripts/gpu_kit.sh, which "
        f"patches tch for it)."
    )


def _checked_torch_version() -> str:
    """The environment's torch release; a clear error when there is none or the wrong one."""
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        raise BuildError(
            f"torch is not visible to this build ({sys.executable}): difflow's worker links the "
            f"environment's libtorch. Either pip's default isolated build hides it: run "
            f"`pip install . --no-build-isolation`; or the environment has none: install "
            f"torch=={PIP_TORCH}.0 into it first.\n{supported_versions_text()}"
        ) from None
    release = version.split("+")[0]
    if not release.startswith(PIP_TORCH + "."):
        kit = (
            f"\ntorch {KIT_TORCH} builds through the GPU kit only: scripts/gpu_kit.sh."
            if release.startswith(KIT_TORCH + ".")
            else ""
        )
        raise BuildError(
            f"difflow cannot be built by pip against torch {version} "
            f"(in {sys.executable}'s environment).\n{supported_versions_text()}{kit}\n"
            f"Install torch=={PIP_TORCH}.0 into this environment and run "
            f"`pip install . --no-build-isolation` again."
        )
    return release


# ---- cargo ----


def _cargo_build() -> tuple[dict[str, Path], Path | None]:
    """Runs the release build and returns the two binaries and the shims it made."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).is_file():
        raise BuildError("difflow is built from source with Rust's cargo, which is not on PATH: install Rust first")
    command = [cargo, "build", "--release", "--workspace", "--message-format=json-render-diagnostics"]
    with tempfile.TemporaryDirectory(prefix="difflow-build-") as shims:
        env = _cargo_environment(Path(shims))
        print(" ".join(command), file=sys.stderr, flush=True)
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise BuildError(f"`{' '.join(command)}` failed (exit {done.returncode}); its errors are above")
    return _artifacts(done.stdout.splitlines())


def _cargo_environment(shims: Path) -> dict[str, str]:
    """The build's environment: tch takes libtorch from this interpreter's torch.

    torch-sys runs `python` (or `python3`) from PATH: both go first on PATH as scripts that
    run this interpreter, whatever PATH held, so that the build links the torch that was
    checked. LIBTORCH_USE_PYTORCH=1 is what scripts/setup.sh sets: the same value keeps
    cargo's fingerprints, so nothing already built rebuilds.
    """
    for name in ("python", "python3"):
        script = shims / name
        script.write_text(f"#!/bin/sh\nexec '{sys.executable}' \"$@\"\n", encoding="utf-8")
        script.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(shims), env.get("PATH", "")])
    env["LIBTORCH_USE_PYTORCH"] = "1"
    return env


def _artifacts(messages: list[str]) -> tuple[dict[str, Path], Path | None]:
    binaries: dict[str, Path] = {}
    shims = []
    for line in messages:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        reason = message.get("reason")
        target = message.get("target") or {}
        if reason == "compiler-artifact" and "bin" in target.get("kind", []) and target.get("name") in BINARIES:
            binaries[target["name"]] = Path(message["executable"])
        elif reason == "build-script-executed" and "difflow-engine" in message.get("package_id", ""):
            candidates = [Path(message["out_dir"]) / name for name in (NCCL_SHIM, PYTHON_SHIM)]
            shims = [candidate for candidate in candidates if candidate.is_file()]
    missing = [name for name in BINARIES if name not in binaries]
    if missing:
        raise BuildError(f"cargo reported no {', '.join(missing)} binary")
    return binaries, shims


# ---- metadata ----


def _project() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        try:
            import tomli as tomllib
        except ImportError:
            raise BuildError("building difflow on Python 3.10 needs tomli: `pip install tomli`") from None
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _version() -> str:
    """The Cargo workspace's version: one number for the crates and the package."""
    text = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    section = text.split("[workspace.package]", 1)[-1].split("\n[", 1)[0]
    found = re.search(r'^version\s*=\s*"([^"]+)"', section, re.MULTILINE)
    if not found:
        raise BuildError("Cargo.toml has no [workspace.package] version")
    return found.group(1)


def _dependencies(torch: str | None) -> list[str]:
    deps = ["safetensors", 'tomli>=1.1; python_version < "3.11"']
    if torch is not None:
        major_minor = ".".join(torch.split(".")[:2])
        deps.insert(0, f"torch=={major_minor}.*")
    return deps


def _metadata_text(torch: str | None) -> str:
    project = _project()
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {NAME}",
        f"Version: {_version()}",
        f"Summary: {project.get('description', '')}",
        f"License: {project.get('license', '')}",
        f"Requires-Python: {project.get('requires-python', '>=3.10')}",
    ]
    lines += [f"Requires-Dist: {dep}" for dep in _dependencies(torch)]
    return "\n".join(lines) + "\n"


def _tag() -> str:
    python = "cp" if sys.implementation.name == "cpython" else "py"
    platform = re.sub(r"[-.]", "_", sysconfig.get_platform())
    return f"{python}{sys.version_info.major}{sys.version_info.minor}-none-{platform}"


def _wheel_text() -> str:
    return f"Wheel-Version: 1.0\nGenerator: difflow_build\nRoot-Is-Purelib: false\nTag: {_tag()}\n"


def _dist_info_name() -> str:
    return f"{NAME}-{_version()}.dist-info"


# ---- the wheel ----


def _write_wheel(directory: Path, torch: str, binaries: dict[str, Path], shims: list[Path]) -> str:
    version = _version()
    data = f"{NAME}-{version}.data"
    entries: list[tuple[str, Path | bytes, int]] = []
    package = ROOT / "python" / NAME
    for path in sorted(package.rglob("*.py")):
        entries.append((f"{NAME}/{path.relative_to(package).as_posix()}", path, 0o644))
    for name, path in binaries.items():
        entries.append((f"{data}/scripts/{name}", path, 0o755))
    for shim in shims:
        entries.append((f"{data}/data/lib/{shim.name}", shim, 0o755))
    dist_info = _dist_info_name()
    entries.append((f"{dist_info}/METADATA", _metadata_text(torch).encode(), 0o644))
    entries.append((f"{dist_info}/WHEEL", _wheel_text().encode(), 0o644))
    entries.append((f"{dist_info}/top_level.txt", f"{NAME}\n".encode(), 0o644))

    directory.mkdir(parents=True, exist_ok=True)
    name = f"{NAME}-{version}-{_tag()}.whl"
    record = []
    with zipfile.ZipFile(directory / name, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as wheel:
        for arcname, source, mode in entries:
            body = source if isinstance(source, bytes) else source.read_bytes()
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, body, compresslevel=1)
            digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
            record.append(f"{arcname},sha256={digest},{len(body)}")
        record.append(f"{dist_info}/RECORD,,")
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = (0o100000 | 0o644) << 16
        wheel.writestr(info, "\n".join(record) + "\n")
    return name
