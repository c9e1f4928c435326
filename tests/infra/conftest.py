"""Synthesize the CDK app once per session (per settings variant) and read what it wrote.

A synth starts node (jsii) and runs cdk-nag, about 10 s, so every template test shares the
session's synth. The functions use the bundler's ``skip`` mode (sources only, no dependency
install) and the build directory is a temporary one. A synth that cdk-nag rejects still
writes the template, so the template tests run and the nag test reports the findings.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Before anything starts the jsii runtime: node 20 prints a banner on every start otherwise.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from infra import constants as c
from infra.config import StackSettings

# The main variant: defaults, plus trigger rules (two overlapping S3 rules on the inbox, one
# on a bucket outside the stack, two schedules) and an alarm e-mail.
MAIN_SETTINGS: dict[str, Any] = {
    "alarm_email": "oncall@example.com",
    "triggers": {
        "s3": [
            {"name": "invoices", "prefix": "invoices/", "suffix": ".pdf", "agent": "researcher"},
            {"name": "all-invoices", "prefix": "invoices/", "agent": "researcher"},
            {"name": "reports", "prefix": "reports/", "suffix": ".csv", "agent": "researcher"},
            {"name": "partner", "bucket": "partner-drop", "agent": "researcher"},
        ],
        "schedules": [
            {
                "name": "nightly-digest",
                "expression": "cron(0 6 * * ? *)",
                "agent": "researcher",
                "input": "Summarise yesterday",
            },
            {"name": "hourly", "expression": "rate(1 hour)", "agent": "researcher", "input": {}},
        ],
    },
}

SAMPLE_PIPELINES_MODULE = "tests.infra.sample_pipelines"

# Everything the main variant leaves at its default, turned the other way.
OTHER_SETTINGS: dict[str, Any] = {
    "stage": "prod",
    "removal_policy": "destroy",
    "provider": "offline",
    "tracing": False,
    "lease_ttl_s": 60,
    # A user's module the synth imports: it adds a second pipeline (no agent stage).
    "agent_modules": [SAMPLE_PIPELINES_MODULE],
    "extra_env": {"SWITCHYARD_WEBHOOK_ATTEMPTS": "3"},
    "functions": {
        "api": {"snap_start": True, "reserved_concurrency": 50},
        "authorizer": {"provisioned_concurrency": 2, "reserved_concurrency": 10},
    },
    "worker": {"min_tasks": 0, "max_tasks": 4, "spot": True, "on_demand_base": 1},
    "network": {"mode": "private", "nat_gateways": 1, "flow_logs": False},
    "queues": {"max_receive_count": 3},
    "monitoring": {"dashboard": False},
}


@dataclass
class Synth:
    settings: StackSettings
    outdir: Path
    template: dict[str, Any]
    report: dict[str, Any]
    error: str | None
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{self.settings.stack_name}.template.json"

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.template["Resources"]
        return resources

    def of_type(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r["Type"] == cfn_type}

    def props(self, logical_id: str) -> dict[str, Any]:
        props: dict[str, Any] = self.resources[logical_id].get("Properties", {})
        return props

    def one(
        self, cfn_type: str, where: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> tuple[str, dict[str, Any]]:
        found = [(k, r.get("Properties", {})) for k, r in self.of_type(cfn_type).items()]
        matching = [(k, p) for k, p in found if where(p)]
        assert len(matching) == 1, f"expected one {cfn_type}, found {[k for k, _ in matching]}"
        return matching[0]

    def function(self, handler: str) -> tuple[str, dict[str, Any]]:
        return self.one("AWS::Lambda::Function", lambda p: p.get("Handler") == handler)

    def alias_of(self, function_id: str) -> tuple[str, dict[str, Any]]:
        return self.one(
            "AWS::Lambda::Alias", lambda p: p.get("FunctionName") == {"Ref": function_id}
        )

    def statements(self, role_id: str) -> list[dict[str, Any]]:
        """Every statement of every policy attached to the role ``role_id``."""
        out: list[dict[str, Any]] = []
        for props in [r["Properties"] for r in self.of_type("AWS::IAM::Policy").values()]:
            if {"Ref": role_id} in props.get("Roles", []):
                out.extend(props["PolicyDocument"]["Statement"])
        for inline in self.props(role_id).get("Policies", []):
            out.extend(inline["PolicyDocument"]["Statement"])
        return out

    def nag(self) -> dict[str, Any]:
        plugins = self.report.get("pluginReports", [])
        reports = [p for p in plugins if p["pluginName"] == "AwsSolutions"]
        assert len(reports) == 1, "cdk-nag's AwsSolutions pack did not run"
        report: dict[str, Any] = reports[0]
        return report


def synthesize(raw: Mapping[str, Any], outdir: Path, build_dir: Path) -> Synth:
    from infra.app import build_app

    settings = StackSettings.from_mapping(raw)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SWITCHYARD_BUILD_DIR", str(build_dir))
        mp.delenv("SWITCHYARD_BUNDLE", raising=False)
        mp.delenv("CDK_DEFAULT_ACCOUNT", raising=False)
        mp.delenv("CDK_DEFAULT_REGION", raising=False)
        app, _stack = build_app(
            context={"switchyard:bundle": "skip"}, outdir=str(outdir), settings=settings
        )
        error: str | None = None
        try:
            app.synth()
        except RuntimeError as exc:  # cdk-nag (or another validation) rejected the app
            error = str(exc)
    template = json.loads((outdir / f"{settings.stack_name}.template.json").read_text())
    report_path = outdir / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return Synth(settings=settings, outdir=outdir, template=template, report=report, error=error)


# ---- helpers the template tests share ------------------------------------------------------


def ref_id(value: Any) -> str:
    """The logical id a Ref or GetAtt points at."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    raise AssertionError(f"not a reference: {value!r}")


def is_alias(function_name: Any, alias_id: str) -> bool:
    """An event-source mapping's FunctionName: ``<function name>:live`` from the alias ARN."""
    text = json.dumps(function_name)
    return f'"Ref": "{alias_id}"' in text and f":{c.LIVE_ALIAS}" in text


def actions_of(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def resources_of(statement: dict[str, Any]) -> list[Any]:
    resources = statement.get("Resource", [])
    return resources if isinstance(resources, list) else [resources]


def allowed(synth: Synth, role_id: str) -> set[str]:
    return {a for s in synth.statements(role_id) if s["Effect"] == "Allow" for a in actions_of(s)}


def function_role(synth: Synth, handler: str) -> str:
    _, props = synth.function(handler)
    return ref_id(props["Role"])


def queue_id(synth: Synth, name_suffix: str) -> str:
    name = f"{synth.settings.resource_prefix}-{name_suffix}"
    queue_id, _ = synth.one("AWS::SQS::Queue", lambda p: p.get("QueueName") == name)
    return queue_id


def worker_container(synth: Synth) -> dict[str, Any]:
    _, task = synth.one("AWS::ECS::TaskDefinition")
    (container,) = task["ContainerDefinitions"]
    assert isinstance(container, dict)
    return container


def env_of(props: dict[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = props.get("Environment", {}).get("Variables", {})
    return env


def cfn_lint() -> str:
    local = Path(sys.executable).parent / "cfn-lint"
    found = str(local) if local.is_file() else shutil.which("cfn-lint")
    if found is None:
        pytest.skip("cfn-lint is not installed (make install)")
    return found


@pytest.fixture(scope="session")
def _build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lambda-build")


@pytest.fixture(scope="session")
def main_synth(tmp_path_factory: pytest.TempPathFactory, _build_dir: Path) -> Synth:
    return synthesize(MAIN_SETTINGS, tmp_path_factory.mktemp("cdk-main"), _build_dir)


@pytest.fixture(scope="session")
def other_synth(tmp_path_factory: pytest.TempPathFactory, _build_dir: Path) -> Synth:
    return synthesize(OTHER_SETTINGS, tmp_path_factory.mktemp("cdk-other"), _build_dir)
