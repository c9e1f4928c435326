"""The Lambda deployment package, built without Docker.

Every Switchyard function ships the same package (one CDK file asset, uploaded once): the
project's ``functions/``, ``shared/`` and ``agents/`` packages at its root, next to the runtime
dependencies, installed for the Lambda runtime (CPython 3.12 on arm64 / Graviton) from the
wheels ``uv.lock`` pins. A function picks its entry point by handler string
(``functions.api.handler.handler``), so one package serves them all.

How the dependencies are installed:

- ``uv export --frozen --no-dev --no-emit-project`` lists exactly what the lock pins for the
  runtime dependency closure of ``pyproject.toml`` (no development tools), with hashes;
- ``uv pip install --target --python-platform aarch64-manylinux2014 --python-version 3.12
  --only-binary :all: --no-deps --require-hashes`` installs those wheels for the *target*, not
  for this machine: no compiler, no Docker, no source builds, every file checked against the
  lock's hashes. (It is ``pip install --platform manylinux2014_aarch64 --python-version 3.12
  --only-binary=:all: --target``; uv is used because the project's virtualenv has no pip, and
  because uv evaluates environment markers for the target interpreter while pip evaluates
  them for the one running it.)
- boto3 and botocore are bundled although the Lambda runtime has them: the runtime's copy
  changes version without notice, and ``shared.dal`` is tested against the version the lock
  pins. It costs about 31 MB of the 250 MB unzipped limit (the whole package is about 66 MB).
- No bytecode is compiled: ``.pyc`` files are specific to the interpreter that writes them,
  and there is no Python 3.12 here. Lambda compiles on import at each cold start.

Caching: dependencies are staged once per ``uv.lock`` content and target under
``build/lambda/deps-<hash>`` and the package per dependencies + sources under
``build/lambda/bundle-<mode>-<hash>`` (``build/`` is git-ignored; ``SWITCHYARD_BUILD_DIR``
moves it). The asset hash handed to CDK is that key, so a synth with nothing changed neither
reinstalls, recopies nor refingerprints anything.

Modes (``SWITCHYARD_BUNDLE``, else the CDK context ``switchyard:bundle``, else ``full``):

- ``full``: sources + dependencies (what ``make synth`` / ``make deploy`` use);
- ``skip``: sources only, no uv and no network: for unit synths in tests. A stack synthesized
  this way deploys, but its functions cannot import their dependencies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aws_cdk import AssetHashType
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

BundleMode = Literal["full", "skip"]

MODE_ENV = "SWITCHYARD_BUNDLE"
MODE_CONTEXT = "switchyard:bundle"
BUILD_DIR_ENV = "SWITCHYARD_BUILD_DIR"
UV_ENV = "SWITCHYARD_UV"
MODES: tuple[BundleMode, ...] = ("full", "skip")

# The Lambda target. The stack must create its functions with the same runtime and
# architecture (``LAMBDA_RUNTIME``, ``LAMBDA_ARCHITECTURE``), or the native wheels
# (pydantic-core, jiter) will not load.
PYTHON_VERSION = "3.12"
UV_PLATFORM = "aarch64-manylinux2014"  # pip: --platform manylinux2014_aarch64
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_12
LAMBDA_ARCHITECTURE = lambda_.Architecture.ARM_64

# What the package holds besides the dependencies: top-level packages of this repository.
SOURCE_PACKAGES: tuple[str, ...] = ("functions", "shared", "agents")
IGNORED_NAMES = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache", ".DS_Store"})
IGNORED_SUFFIXES = (".pyc", ".pyo")
MANIFEST = "switchyard_bundle.json"

# Bump when the layout or the install command changes, so old caches are not reused.
FORMAT_VERSION = "2"
# Staged directories kept per kind; older ones are removed once they are this old.
KEEP_NEWEST = 3
PRUNE_AFTER_S = 3600.0

ROOT = Path(__file__).resolve().parents[1]


class BundlingError(RuntimeError):
    """The package could not be built (uv missing, a wheel missing for the target, ...)."""


@dataclass(frozen=True)
class StagedBundle:
    """A staged package: the directory handed to CDK and the key it is cached under."""

    path: Path
    key: str
    mode: BundleMode


# ---- settings --------------------------------------------------------------------------------


def bundle_mode(scope: IConstruct | None = None) -> BundleMode:
    """``SWITCHYARD_BUNDLE``, else the ``switchyard:bundle`` context of ``scope``, else full."""
    raw: object = os.environ.get(MODE_ENV) or None
    if raw is None and scope is not None:
        raw = scope.node.try_get_context(MODE_CONTEXT)
    value = str(raw or "full").strip().lower()
    for mode in MODES:
        if value == mode:
            return mode
    raise BundlingError(f"{MODE_ENV} / {MODE_CONTEXT} must be one of {MODES}, not {value!r}")


def build_dir(root: Path = ROOT) -> Path:
    configured = os.environ.get(BUILD_DIR_ENV)
    return Path(configured).resolve() if configured else root / "build" / "lambda"


def uv_command(root: Path = ROOT) -> list[str]:
    """How to run uv: ``SWITCHYARD_UV``, the project's bootstrap copy, PATH, ``python -m uv``."""
    configured = os.environ.get(UV_ENV)
    if configured:
        return [configured]
    local = root / ".tools" / "bin" / "uv"
    if local.is_file():
        return [str(local)]
    found = shutil.which("uv")
    if found:
        return [found]
    import importlib.util

    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    raise BundlingError("uv not found: run `make install` (it bootstraps uv into .tools/)")


# ---- keys ------------------------------------------------------------------------------------


def _source_files(root: Path, packages: Sequence[str]) -> Iterator[Path]:
    for package in packages:
        base = root / package
        if not base.is_dir():
            raise BundlingError(f"source package {package}/ not found under {root}")
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_NAMES)
            for name in sorted(filenames):
                if name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES):
                    continue
                yield Path(dirpath) / name


def sources_key(root: Path = ROOT, packages: Sequence[str] = SOURCE_PACKAGES) -> str:
    """A hash of every source file's path and bytes (what the package copies)."""
    digest = hashlib.sha256()
    for path in _source_files(root, packages):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def dependencies_key(root: Path = ROOT) -> str:
    """A hash of ``uv.lock`` and the target: the installed dependencies depend on nothing else."""
    lock = root / "uv.lock"
    if not lock.is_file():
        raise BundlingError(f"{lock} not found")
    digest = hashlib.sha256()
    for part in (FORMAT_VERSION, PYTHON_VERSION, UV_PLATFORM):
        digest.update(part.encode() + b"\0")
    digest.update(lock.read_bytes())
    return digest.hexdigest()


# ---- staging ---------------------------------------------------------------------------------


def export_requirements(root: Path = ROOT) -> str:
    """The runtime dependency closure as uv.lock pins it (requirements format, with hashes)."""
    cmd = [
        *uv_command(root),
        "export",
        "--frozen",
        "--no-dev",
        "--no-emit-project",
        "--no-header",
        "--no-annotate",
        "--format",
        "requirements-txt",
        "--project",
        str(root),
    ]
    return _run(cmd, cwd=root).stdout


def install_dependencies(requirements: str, target: Path, root: Path = ROOT) -> None:
    """Install ``requirements`` into ``target`` for CPython 3.12 on manylinux2014 aarch64."""
    with tempfile.TemporaryDirectory(prefix="switchyard-req-") as tmp:
        req_file = Path(tmp) / "requirements.txt"
        req_file.write_text(requirements)
        cmd = [
            *uv_command(root),
            "pip",
            "install",
            "--quiet",
            "--no-config",
            "--target",
            str(target),
            "--python",
            sys.executable,
            "--python-platform",
            UV_PLATFORM,
            "--python-version",
            PYTHON_VERSION,
            "--only-binary",
            ":all:",
            "--no-deps",
            "--require-hashes",
            "--link-mode",
            "copy",
            "--requirement",
            str(req_file),
        ]
        _run(cmd, cwd=root)


def stage_dependencies(root: Path = ROOT, *, out: Path | None = None) -> Path:
    """The installed dependencies for the current ``uv.lock``, built once and then reused."""
    out = out or build_dir(root)
    key = dependencies_key(root)
    final = out / f"deps-{key[:20]}"
    if final.is_dir():
        _touch(final)
        return final
    requirements = export_requirements(root)
    with _building(final) as tmp:
        install_dependencies(requirements, tmp, root)
        # Console scripts (their shebang names this machine's python) are of no use in Lambda.
        shutil.rmtree(tmp / "bin", ignore_errors=True)
        _remove_bytecode(tmp)
        (tmp / "requirements.txt").write_text(requirements)
    _prune(out, "deps-", keep=final)
    return final


def stage(
    mode: BundleMode = "full",
    *,
    root: Path = ROOT,
    out: Path | None = None,
    packages: Sequence[str] = SOURCE_PACKAGES,
) -> StagedBundle:
    """Stage the package for ``mode``: a directory that is reused while nothing changes."""
    out = out or build_dir(root)
    digest = hashlib.sha256()
    for part in (FORMAT_VERSION, mode, *packages, sources_key(root, packages)):
        digest.update(part.encode() + b"\0")
    deps: Path | None = None
    if mode == "full":
        deps = stage_dependencies(root, out=out)
        digest.update(deps.name.encode())
    key = digest.hexdigest()
    final = out / f"bundle-{mode}-{key[:20]}"
    if not (final / MANIFEST).is_file():
        with _building(final) as tmp:
            if deps is not None:
                _link_tree(deps, tmp, skip={"requirements.txt"})
            for package in packages:
                _copy_sources(root, package, tmp)
            manifest = {
                "mode": mode,
                "key": key,
                "python": PYTHON_VERSION,
                "platform": UV_PLATFORM,
                "packages": list(packages),
                "dependencies": deps.name if deps is not None else None,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _prune(out, f"bundle-{mode}-", keep=final)
    else:
        _touch(final)
    return StagedBundle(path=final, key=key, mode=mode)


def lambda_code(function_dir: str, *, scope: IConstruct | None = None) -> lambda_.Code:
    """The deployment package for the function in ``functions/<function_dir>``.

    ``function_dir`` is checked (``"api"`` or ``"functions/api"``) but every function gets the
    same package, so CDK stages and uploads it once; the handler string picks the entry point.
    ``scope`` lets the ``switchyard:bundle`` context choose the mode.
    """
    _function_path(function_dir)
    staged = stage(bundle_mode(scope))
    return lambda_.Code.from_asset(
        str(staged.path), asset_hash=staged.key, asset_hash_type=AssetHashType.CUSTOM
    )


# ---- helpers ---------------------------------------------------------------------------------


def _function_path(function_dir: str, root: Path = ROOT) -> Path:
    rel = Path(function_dir.replace(".", "/")) if "/" not in function_dir else Path(function_dir)
    candidates = [root / rel, root / "functions" / rel]
    for path in candidates:
        resolved = path.resolve()
        functions = root / "functions"
        if resolved.is_dir() and resolved != functions and resolved.is_relative_to(functions):
            return resolved
    raise BundlingError(f"no function directory {function_dir!r} under {root / 'functions'}")


def _run(cmd: list[str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    try:
        return subprocess.run(  # noqa: S603 (fixed argv, no shell)
            cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True
        )
    except FileNotFoundError as exc:
        raise BundlingError(f"cannot run {cmd[0]}: {exc}") from exc
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip()
        raise BundlingError(f"{' '.join(cmd[:3])} failed ({exc.returncode}): {detail}") from exc


@contextlib.contextmanager
def _building(final: Path) -> Iterator[Path]:
    """Build into a temporary sibling of ``final``, then rename it into place (atomic: a
    concurrent synth either sees the finished directory or none). If another process got
    there first, its copy is kept and ours discarded."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield tmp
        try:
            tmp.rename(final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _copy_sources(root: Path, package: str, dest: Path) -> None:
    for path in _source_files(root, [package]):
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _link_tree(src: Path, dest: Path, *, skip: set[str]) -> None:
    """Hard-link (copy when linking is impossible) every file of ``src`` into ``dest``."""
    for dirpath, _dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            if rel == Path(".") and name in skip:
                continue
            source, target = Path(dirpath) / name, dest / rel / name
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)


def _touch(path: Path) -> None:
    """Mark a reused directory as recent, so pruning keeps it."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _remove_bytecode(tree: Path) -> None:
    for cache in sorted(tree.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)


def _prune(out: Path, prefix: str, *, keep: Path) -> None:
    """Remove staged directories of one kind beyond the newest few, once they are old enough
    that no synth still copies from them."""
    entries = sorted(
        (p for p in out.glob(f"{prefix}*") if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    now = time.time()
    for stale in entries[KEEP_NEWEST - 1 :]:
        if now - stale.stat().st_mtime > PRUNE_AFTER_S:
            shutil.rmtree(stale, ignore_errors=True)


__all__ = [
    "LAMBDA_ARCHITECTURE",
    "LAMBDA_RUNTIME",
    "MODE_CONTEXT",
    "MODE_ENV",
    "PYTHON_VERSION",
    "SOURCE_PACKAGES",
    "UV_PLATFORM",
    "BundleMode",
    "BundlingError",
    "StagedBundle",
    "build_dir",
    "bundle_mode",
    "dependencies_key",
    "export_requirements",
    "lambda_code",
    "sources_key",
    "stage",
    "stage_dependencies",
]
