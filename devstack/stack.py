"""The local stack: everything `make dev` starts, in start order, and stopped in reverse.

1. AWS credentials forced to moto's dummies and ``AWS_ENDPOINT_URL`` pointed at a moto
   server on 127.0.0.1 (in this process; Step Functions execution switched on), so nothing
   here can reach a real account.
2. The CDK app synthesized with ``local_stack_settings()`` (``LOCAL_STACK_SETTINGS`` plus the
   agent modules of ``SWITCHYARD_AGENT_MODULES``, so their pipelines get state machines;
   cached under build/cfn-moto) and deployed into moto through its CloudFormation, the whole
   template.
3. The template read back (``devstack.topology``): each function in container processes
   with its deployed environment; a poller per event-source mapping; the schedules. Lambda
   Invoke on the moto endpoint (what Step Functions' task states call) reaches the same
   containers (``devstack.motoserver``), so pipelines run their function stages and gates.
4. A development API key for tenant ``dev``; worker processes under a supervisor; the local
   gateway serving HTTP.

State lives in the moto server, so it lives exactly as long as this process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.apigw import Gateway
from devstack.functions import FunctionError, LocalFunctions
from devstack.gateway import LocalGateway
from devstack.motoserver import FunctionFailed, MotoServer
from devstack.pollers import QueuePoller
from devstack.scheduler import Scheduler, UnknownSchedule
from devstack.stack_settings import DEV_TENANT, DevOptions, local_stack_settings
from devstack.supervisor import WorkerSupervisor, worker_environment
from devstack.topology import Topology, read_topology
from infra.constants import API_HANDLER, AUTHORIZER_HANDLER

OUTPUTS_FILE = "local-outputs.json"
_MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_FIRE = re.compile(r"^/_local/schedules/([^/]+)/fire$")


class LocalStack:
    def __init__(self, options: DevOptions, report: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.report = report or (lambda line: None)
        self.api_key = ""
        self.moto_url = ""
        self.outputs: dict[str, str] = {}
        # What the local stack sets over the template's environments (functions and workers).
        self.overrides: dict[str, str] = {}
        self.topology: Topology | None = None
        self.stack_name = ""
        self._moto: MotoServer | None = None
        self._functions: LocalFunctions | None = None
        self._pollers: list[QueuePoller] = []
        self.scheduler: Scheduler | None = None
        self.supervisor: WorkerSupervisor | None = None
        self._worker_env: dict[str, str] = {}
        self.gateway: LocalGateway | None = None
        self.started_s = 0.0

    # ---- start ---------------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        # Bound first: a port already taken fails before anything else is started.
        self.gateway = LocalGateway(
            Gateway(api=_not_ready, authorizer=_not_ready), port=self.options.port, admin=self.admin
        )
        try:
            self._start_moto()
            deployed, template = self._deploy()
            self.topology = read_topology(template, deployed)
            self.overrides = {**self._local_overrides(), **self._secrets()}
            meter = self._moto.meter if self._moto is not None else None
            self._functions = LocalFunctions(
                self.topology.functions,
                self.overrides,
                base_env=os.environ,
                log_dir=self.options.state_dir / "logs",
                concurrency=self.options.function_concurrency,
                on_invoke=(
                    (lambda name, s, failed: meter.invoked(name, s, error=failed))
                    if meter is not None
                    else None
                ),
            )
            self._route_lambda(deployed)
            self.gateway.gateway = Gateway(
                api=self._functions.handler(self.topology.function(API_HANDLER)),
                authorizer=self._functions.handler(self.topology.function(AUTHORIZER_HANDLER)),
            )
            self.api_key = self._dev_key()
            region = deployed.region
            self._pollers = [
                QueuePoller(source, self._functions, region=region, report=self.report)
                for source in self.topology.event_sources
            ]
            for poller in self._pollers:
                poller.start()
            self.scheduler = Scheduler(self.topology.schedules, self._functions, report=self.report)
            self.scheduler.start()
            from infra.constants import WORKER_CONTAINER
            from shared.dal.local import container_environment

            self._worker_env = worker_environment(
                container_environment(deployed, WORKER_CONTAINER), self.overrides
            )
            self._start_workers()
            self.gateway.start()
            self._write_outputs(region)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - started

    def _start_workers(self) -> None:
        self.supervisor = WorkerSupervisor(
            self._worker_env,
            count=self.options.workers,
            state_dir=self.options.state_dir,
            stop_timeout_s=self.options.stop_timeout_s,
            report=self.report,
        )
        self.supervisor.start()

    def _route_lambda(self, deployed: Any) -> None:
        """Lambda Invoke of a stack function on the moto endpoint runs its container."""
        functions = self._functions
        assert functions is not None
        assert self._moto is not None
        assert self.topology is not None
        by_name = {
            deployed.resources[fn.logical_id][1]: fn
            for fn in self.topology.functions.values()
            if fn.logical_id in deployed.resources
        }

        def invoke(name: str, event: Any) -> Any:
            try:
                return functions.invoke(by_name[name], event)
            except FunctionError as exc:
                raise FunctionFailed(exc.error_type, exc.error_message) from exc

        self._moto.router.route(by_name, invoke)

    def _start_moto(self) -> None:
        from shared.dal.local import configure_moto_server

        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update(_MOTO_CREDENTIALS)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._moto = MotoServer(port=self.options.moto_port)
        self._moto.start()
        port = self._moto.port
        self.moto_url = self._moto.url
        os.environ["AWS_ENDPOINT_URL"] = self.moto_url
        # Step Functions service integrations call moto at localhost:$MOTO_PORT.
        os.environ["MOTO_PORT"] = str(port)
        configure_moto_server(self.moto_url, {"stepfunctions": {"execute_state_machine": True}})

    def _deploy(self) -> tuple[Any, dict[str, Any]]:
        from devstack.synth import synthesize_in_child
        from shared.dal.local import deploy_template, only_stack

        self.report("synthesizing the CDK app (cached in build/cfn-moto after the first run)")
        assembly = synthesize_in_child()
        deployed = deploy_template(
            local_stack_settings(), endpoint_url=self.moto_url, resource_types=None
        )
        self.stack_name = deployed.name
        self.outputs = dict(deployed.outputs)
        self.report(
            f"deployed stack {deployed.name} into moto: {len(deployed.resources)} resources "
            f"in {deployed.seconds:.1f} s"
        )
        return deployed, only_stack(assembly).template()

    def _local_overrides(self) -> dict[str, str]:
        """Settings of the local stack on top of the template's environments."""
        overrides = {
            "SWITCHYARD_OFFLINE_LATENCY_S": str(self.options.offline_latency_s),
            # Webhooks to a receiver on this machine are the point of trying them locally.
            "SWITCHYARD_WEBHOOK_ALLOW_PRIVATE": "true",
            # Ctrl-C should not wait ECS's full 30 s for a drain.
            "SWITCHYARD_WORKER_DRAIN_TIMEOUT_S": str(max(1.0, self.options.stop_timeout_s - 3)),
            # A short long poll: a stopping worker waits for the poll in flight.
            "SWITCHYARD_WORKER_RECEIVE_WAIT_S": "2",
        }
        if os.environ.get("ANTHROPIC_API_KEY"):
            overrides["SWITCHYARD_PROVIDER"] = "anthropic"
        return overrides

    def _secrets(self) -> dict[str, str]:
        """The stack's secrets (from moto's Secrets Manager) under the variables the code
        reads: what a function's cold start exports and ECS injects into the worker."""
        from shared.dal.secrets import export_secrets
        from shared.observability import register_secret

        assert self.topology is not None
        env = dict(self.topology.function(API_HANDLER).environment)
        if os.environ.get("ANTHROPIC_API_KEY"):
            env["ANTHROPIC_API_KEY"] = os.environ["ANTHROPIC_API_KEY"]  # the user's, not moto's
        exported = export_secrets(env, on_value=register_secret)
        return {name: env[name] for name in exported if name != "ANTHROPIC_API_KEY"}

    def _dev_key(self) -> str:
        from shared.config import Settings
        from shared.logic.keys import create_key
        from shared.wiring import build_control_store

        assert self.topology is not None
        api = self.topology.function(API_HANDLER)
        store = build_control_store(Settings.from_env(api.environment))
        key, _ = asyncio.run(create_key(store, DEV_TENANT, "make dev"))
        return key

    def _write_outputs(self, region: str) -> None:
        """cdk-outputs.json's shape, plus where the stack's AWS is: what operator commands
        (`switchyard keys`, `switchyard dlq`) read."""
        self.options.state_dir.mkdir(parents=True, exist_ok=True)
        document = {
            self.stack_name: {
                **self.outputs,
                "ApiUrl": self.url,
                "AwsEndpointUrl": self.moto_url,
                "Region": region,
            }
        }
        self.outputs_path.write_text(json.dumps(document, indent=2) + "\n")

    @property
    def outputs_path(self) -> Path:
        return self.options.state_dir / OUTPUTS_FILE

    @property
    def url(self) -> str:
        return self.gateway.url if self.gateway is not None else ""

    # ---- the local controls (/_local/...) ------------------------------------------------------

    def admin(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/_local/workers":
            workers = self.supervisor.describe() if self.supervisor else []
            replaced = self.supervisor.replaced if self.supervisor else 0
            return 200, {"workers": workers, "replaced": replaced}
        if method == "POST" and path == "/_local/workers/stop":
            # Every worker drains and exits (as an ECS service scaled to zero): what waits
            # on a person (approvals) must not need one.
            if self.supervisor is not None:
                supervisor, self.supervisor = self.supervisor, None
                supervisor.stop()
            return 200, {"workers": []}
        if method == "POST" and path == "/_local/workers/start":
            if self.supervisor is None and self._worker_env:
                self._start_workers()
            return 200, {"workers": self.supervisor.describe() if self.supervisor else []}
        if path == "/_local/metering" and method in ("GET", "DELETE") and self._moto is not None:
            # What the stack asked AWS for since the last reset (DELETE: read and reset).
            meter = self._moto.meter
            snapshot = meter.snapshot()
            if method == "DELETE":
                meter.reset()
            return 200, snapshot
        if method == "GET" and path == "/_local/schedules":
            return 200, {"schedules": self.scheduler.describe() if self.scheduler else []}
        fire = _FIRE.match(path)
        if method == "POST" and fire and self.scheduler is not None:
            try:
                return 200, {
                    "schedule": fire.group(1),
                    "result": self.scheduler.fire(fire.group(1)),
                }
            except UnknownSchedule:
                return 404, {"message": f"no schedule named {fire.group(1)!r}"}
        if method == "GET" and path == "/_local/stack":
            return 200, {
                "stack": self.stack_name,
                "moto": self.moto_url,
                "outputs": self.outputs,
                "outputs_file": str(self.outputs_path),
                "functions": self._functions.describe() if self._functions else [],
                "pollers": [
                    {
                        "function": p.source.function.name,
                        "queue": p.source.queue_url,
                        "delivered": p.delivered,
                    }
                    for p in self._pollers
                ],
            }
        return 404, {"message": f"no local control {method} {path}"}

    # ---- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything that was started, newest first; safe to call more than once."""
        if self.gateway is not None:
            gateway, self.gateway = self.gateway, None
            gateway.stop()
        if self.supervisor is not None:
            supervisor, self.supervisor = self.supervisor, None
            supervisor.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        for poller in self._pollers:
            poller.stop()
        for poller in self._pollers:
            poller.join(5.0)
        if self.scheduler is not None:
            self.scheduler.join(5.0)
            self.scheduler = None
        self._pollers = []
        if self._functions is not None:
            functions, self._functions = self._functions, None
            functions.stop()
        if self._moto is not None:
            moto, self._moto = self._moto, None
            moto.stop()
        # The outputs name a moto endpoint that no longer exists: operator commands must not
        # find them (they would fall through to cdk-outputs.json otherwise).
        self.outputs_path.unlink(missing_ok=True)


def _not_ready(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise RuntimeError("the local stack is still starting")
