"""A pipeline's results as Python objects, read from `difflow.lock` and the stage cache.

`difflow.lock` (beside the pipeline, written by every `difflow run`) names each stage
instance's cache key; the entry `<cache>/<key>/` holds `manifest.toml` (the parameters the
worker received, the output files), `metrics.json` for metrics stages and the tensors as
`*.safetensors`. The cache folder is `.difflow/cache` beside the pipeline unless the
`difflow.toml` there says `cache = "…"`. Nothing here runs `difflow` or imports torch
until a tensor is read.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Union

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

LOCK_FILE = "difflow.lock"
SETTINGS_FILE = "difflow.toml"
MANIFEST = "manifest.toml"
# Lock files, manifests and metrics are small; a bigger file is not one difflow wrote.
TEXT_LIMIT = 64 * 1024 * 1024

PathLike = Union[str, "os.PathLike[str]"]


class DifflowError(Exception):
    """Results that cannot be read: the message says why and what to run."""


def lock(pipeline: PathLike) -> dict[str, Any]:
    """The `difflow.lock` of `pipeline`'s last run, as a dict (`pipeline`, `stages`)."""
    file = Path(pipeline)
    if not file.is_file():
        raise DifflowError(f"there is no pipeline file {file}")
    # As `difflow` does: the lock file lies beside the pipeline's real path.
    real = file.resolve()
    path = real.parent / LOCK_FILE
    if not path.exists():
        raise DifflowError(
            f"{file} has not been run: there is no {LOCK_FILE} beside it.\n"
            f"Run `difflow run {file}` first."
        )
    record = _toml(path)
    recorded = record.get("pipeline")
    if recorded is None or recorded == real.name:
        return {key: value for key, value in record.items() if key != "pipelines"}
    # Pipelines sharing a folder: the others' records are sections by file name.
    section = record.get("pipelines", {}).get(real.name)
    if isinstance(section, dict):
        return {"pipeline": real.name, "stages": section.get("stages", {})}
    raise DifflowError(
        f"{path} holds no record of {real.name} (it records {', '.join([recorded, *record.get('pipelines', {})])}).\n"
        f"Run `difflow run {file}` to read its results."
    )


def results(pipeline: PathLike, stage: str) -> Union["StageResult", list["StageResult"]]:
    """The results of `stage` in `pipeline`'s last run.

    A stage without sweeps, or one instance named in full (`gen[scale=0.5]`, `ddpm@5000`),
    gives one `StageResult`; a swept stage (`gen`) gives a list, one per instance, in the
    order of `difflow.lock`.
    """
    file = Path(pipeline)
    stages = lock(file).get("stages", {})
    cache = cache_folder(file)
    if stage in stages:
        return _result(file, cache, stage, stages[stage])
    family = [name for name in stages if name.startswith(stage + "[")]
    if not family:
        raise DifflowError(
            f"no stage `{stage}` in the last run of {file}.\n"
            f"The stages are: {', '.join(_stage_names(stages)) or '(none)'}"
        )
    return [_result(file, cache, name, stages[name]) for name in family]


def cache_folder(pipeline: PathLike) -> Path:
    """Where `pipeline`'s stage outputs live: `difflow.toml`'s `cache`, else `.difflow/cache`."""
    folder = Path(pipeline).resolve().parent
    settings = folder / SETTINGS_FILE
    configured = _toml(settings).get("cache") if settings.exists() else None
    if configured is not None and not isinstance(configured, str):
        raise DifflowError(f"{settings}: `cache` must be a path (a string)")
    return folder / configured if configured else folder / ".difflow" / "cache"


@dataclass
class StageResult:
    """One stage instance's cache entry."""

    name: str
    kind: str
    key: str
    dir: Path
    params: dict[str, Any]
    """The parameters the worker received: defaults filled in, configs inlined."""
    numbers: dict[str, float]
    """Headline numbers: `metrics.json` (nested names joined by dots), else what the worker reported."""
    files: dict[str, Path]
    """Every output file by its name in the entry."""
    tensors: Mapping[str, Mapping[str, Any]] = field(repr=False)
    """`tensors["samples"]["points"]`: each `*.safetensors` file by its stem, each tensor
    loaded as a `torch.Tensor` on first use."""
    manifest: dict[str, Any] = field(repr=False)


def _result(file: Path, cache: Path, name: str, record: dict[str, Any]) -> StageResult:
    key = record.get("key", "")
    entry = cache / key
    manifest_path = entry / MANIFEST
    manifest = _toml(manifest_path) if key and manifest_path.is_file() else None
    if manifest is None or manifest.get("key") != key:
        raise DifflowError(
            f"the cache entry of `{name}` (key {key}) is missing from {cache}: it was removed "
            f"(`difflow cache gc`) or {LOCK_FILE} comes from another machine.\n"
            f"Run `difflow run {shlex.quote(str(file))} --target {shlex.quote(name)}` to compute it again."
        )
    outputs = manifest.get("outputs", {})
    files = {rel: entry / rel for rel in sorted(outputs)}
    tensors = {Path(rel).stem: TensorFile(path) for rel, path in files.items() if rel.endswith(".safetensors")}
    return StageResult(
        name=name,
        kind=manifest.get("kind", record.get("kind", "")),
        key=key,
        dir=entry,
        params=_json(manifest.get("params", "{}"), manifest_path),
        numbers=_numbers(entry, manifest),
        files=files,
        tensors=tensors,
        manifest=manifest,
    )


class TensorFile(Mapping):
    """The tensors of one safetensors file, each read (as a `torch.Tensor`) when first asked for."""

    def __init__(self, path: Path):
        self.path = path
        self._names: list[str] | None = None
        self._loaded: dict[str, Any] = {}

    def _open(self):
        from safetensors import safe_open

        _check_regular(self.path)
        return safe_open(str(self.path), framework="pt")

    def _keys(self) -> list[str]:
        if self._names is None:
            with self._open() as f:
                self._names = sorted(f.keys())
        return self._names

    def __getitem__(self, name: str):
        if name not in self._loaded:
            if name not in self._keys():
                raise KeyError(f"{name!r} is not in {self.path.name}; it holds {', '.join(self._keys())}")
            with self._open() as f:
                self._loaded[name] = f.get_tensor(name)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __repr__(self) -> str:
        return f"TensorFile({str(self.path)!r}, tensors={self._keys()!r})"


def _numbers(entry: Path, manifest: dict[str, Any]) -> dict[str, float]:
    """`metrics.json` flattened to dotted names (as in difflow.lock), else the reported metrics."""
    path = entry / "metrics.json"
    numbers: dict[str, float] = {}
    if path.is_file():
        _flatten("", _json(_read_text(path), path), numbers)
    return numbers or {k: float(v) for k, v in manifest.get("metrics", {}).items()}


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        out[prefix] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)


def _stage_names(stages: Mapping[str, Any]) -> list[str]:
    """The names `results` takes, as the user wrote them: swept instances by their stage,
    hidden statistics stages left out."""
    names = []
    for name in stages:
        base = name.split("[", 1)[0]
        if base.startswith("stats(") or base in names:
            continue
        names.append(base)
    return names


def _check_regular(path: Path) -> None:
    """Regular files only: a FIFO or device named like an output would block or never end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DifflowError(f"{path} is missing") from None
    if not stat.S_ISREG(mode):
        raise DifflowError(f"{path} is not a regular file")


def _read_text(path: Path) -> str:
    _check_regular(path)
    with open(path, "rb") as f:
        data = f.read(TEXT_LIMIT + 1)
    if len(data) > TEXT_LIMIT:
        raise DifflowError(f"{path} is larger than {TEXT_LIMIT} bytes: not a file difflow wrote")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DifflowError(f"{path} is not UTF-8 text: {e}") from None


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(_read_text(path))
    except tomllib.TOMLDecodeError as e:
        raise DifflowError(f"{path} is not valid TOML: {e}") from None


def _json(text: str, where: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DifflowError(f"{where} holds invalid JSON: {e}") from None
