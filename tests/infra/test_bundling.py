"""The Lambda package built without Docker (``infra/bundling.py``).

The fast tests stage sources only (``skip`` mode) into a temporary build directory; one slow
test installs the real dependencies from PyPI for CPython 3.12 on arm64, as ``make synth`` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from infra import bundling
from infra.bundling import BundlingError, lambda_code, stage

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


@pytest.fixture(autouse=True)
def _build_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = tmp_path / "build"
    monkeypatch.setenv(bundling.BUILD_DIR_ENV, str(out))
    monkeypatch.delenv(bundling.MODE_ENV, raising=False)
    return out


def fake_root(tmp_path: Path) -> Path:
    """A tiny project with the three source packages and a lock file."""
    root = tmp_path / "project"
    for package in bundling.SOURCE_PACKAGES:
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text(f"# {package}\n")
    (root / "functions" / "api").mkdir()
    (root / "functions" / "api" / "handler.py").write_text("def handler(event, ctx): ...\n")
    (root / "functions" / "api" / "__pycache__").mkdir()
    (root / "functions" / "api" / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"x")
    (root / "uv.lock").write_text("version = 1\n")
    return root


def files_under(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}


def test_skip_mode_stages_the_sources_and_nothing_else(tmp_path: Path) -> None:
    staged = stage("skip", out=tmp_path / "out")
    names = files_under(staged.path)
    assert "functions/api/handler.py" in names
    assert "functions/authorizer/handler.py" in names
    assert "shared/config.py" in names
    assert "agents/research.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    top = {n.split("/")[0] for n in names}
    assert top == {*bundling.SOURCE_PACKAGES, bundling.MANIFEST}
    manifest = json.loads((staged.path / bundling.MANIFEST).read_text())
    assert manifest["mode"] == "skip"
    assert manifest["dependencies"] is None


def test_a_staged_package_is_reused_until_a_source_changes(tmp_path: Path) -> None:
    root, out = fake_root(tmp_path), tmp_path / "out"
    first = stage("skip", root=root, out=out)
    marker = first.path / "reused"
    marker.write_text("")
    again = stage("skip", root=root, out=out)
    assert again == first
    assert marker.exists()  # the very same directory, not rebuilt

    (root / "shared" / "__init__.py").write_text("# changed\n")
    changed = stage("skip", root=root, out=out)
    assert changed.key != first.key
    assert changed.path != first.path
    assert (changed.path / "shared" / "__init__.py").read_text() == "# changed\n"
    assert first.path.is_dir()  # recent packages are kept (a concurrent synth may copy them)


def test_bytecode_does_not_change_the_key(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    before = bundling.sources_key(root)
    (root / "shared" / "__pycache__").mkdir()
    (root / "shared" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert bundling.sources_key(root) == before


def test_the_dependencies_key_follows_the_lock_file(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    before = bundling.dependencies_key(root)
    (root / "uv.lock").write_text("version = 2\n")
    assert bundling.dependencies_key(root) != before


def test_the_mode_comes_from_the_environment_then_the_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aws_cdk as cdk

    app = cdk.App(context={bundling.MODE_CONTEXT: "skip"})
    assert bundling.bundle_mode() == "full"
    assert bundling.bundle_mode(app) == "skip"
    monkeypatch.setenv(bundling.MODE_ENV, "full")
    assert bundling.bundle_mode(app) == "full"
    monkeypatch.setenv(bundling.MODE_ENV, "docker")
    with pytest.raises(BundlingError, match="must be one of"):
        bundling.bundle_mode(app)


@pytest.mark.parametrize("function_dir", ["api", "functions/api", "functions.api", "dlq"])
def test_known_function_directories_are_accepted(
    function_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(bundling.MODE_ENV, "skip")
    assert lambda_code(function_dir) is not None


@pytest.mark.parametrize("function_dir", ["nope", "functions", "../shared", "shared"])
def test_unknown_function_directories_are_refused(
    function_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(bundling.MODE_ENV, "skip")
    with pytest.raises(BundlingError, match="no function directory"):
        lambda_code(function_dir)


def test_every_function_shares_one_asset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    monkeypatch.setenv(bundling.MODE_ENV, "skip")
    app = cdk.App(outdir=str(tmp_path / "cdk.out"))
    stack = cdk.Stack(app, "BundlingProbe")
    for name in ("api", "authorizer", "dlq"):
        lambda_.Function(
            stack,
            name,
            runtime=bundling.LAMBDA_RUNTIME,
            architecture=bundling.LAMBDA_ARCHITECTURE,
            handler=f"functions.{name}.handler.handler",
            code=lambda_code(name, scope=stack),
        )
    assembly = app.synth()
    assets = json.loads(Path(assembly.directory, "BundlingProbe.assets.json").read_text())
    zips = [a for a in assets["files"].values() if a["source"]["packaging"] == "zip"]
    assert len(zips) == 1
    staged = Path(assembly.directory, zips[0]["source"]["path"])
    assert (staged / "functions" / "dlq" / "handler.py").is_file()
    template = json.loads(Path(assembly.directory, "BundlingProbe.template.json").read_text())
    functions = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    ]
    assert {f["Runtime"] for f in functions} == {"python3.12"}
    assert {tuple(f["Architectures"]) for f in functions} == {("arm64",)}
    assert len({f["Code"]["S3Key"] for f in functions}) == 1


# ---- the real thing --------------------------------------------------------------------------


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {_norm(p["name"]): p["version"] for p in lock["package"] if "version" in p}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_full_mode_installs_the_locked_wheels_for_lambda_arm64(tmp_path: Path) -> None:
    """Needs PyPI (or a warm uv cache): installs the runtime dependency closure of uv.lock."""
    if not (ROOT / ".tools" / "bin" / "uv").exists() and shutil.which("uv") is None:
        pytest.skip("uv is not installed (make install)")
    staged = stage("full", out=tmp_path / "out")
    root = staged.path

    installed = {
        _norm(m.group(1)): m.group(2)
        for d in root.glob("*.dist-info")
        if (m := re.fullmatch(r"(.+)-([^-]+)\.dist-info", d.name))
    }
    locked = locked_versions()
    for name in ("anthropic", "aws-lambda-powertools", "pydantic", "pydantic-core", "boto3"):
        assert installed.get(name) == locked[name], name
    assert all(locked[name] == version for name, version in installed.items())
    # Runtime closure only: no development tools, no CDK, not the project as a wheel.
    for dev in ("moto", "pytest", "aws-cdk-lib", "mypy", "ruff", "switchyard"):
        assert dev not in installed

    native = [p.name for p in root.rglob("*.so")]
    assert native
    assert all("cpython-312-aarch64-linux-gnu" in name for name in native), native
    assert not (root / "bin").exists()
    assert not any(root.rglob("__pycache__"))
    assert (root / "functions" / "api" / "handler.py").is_file()
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < LAMBDA_UNZIPPED_LIMIT

    # The second synth reuses everything; a source change restages without reinstalling.
    deps = next((tmp_path / "out").glob("deps-*"))
    deps_mtime = os.stat(deps / "requirements.txt").st_mtime_ns
    assert stage("full", out=tmp_path / "out") == staged
    assert os.stat(deps / "requirements.txt").st_mtime_ns == deps_mtime
