"""AWS on this machine: the synthesized CDK stack deployed into moto, and hand-written provisioning.

moto (and the CDK, for a synth) are development dependencies, imported only when asked for.

**From the template** (the one definition of the resources, ``infra/``): ``deploy_template``
synthesizes ``infra/app.py`` once per settings (cached, ``synthesized_assembly``) and deploys it
into moto's CloudFormation the way ``cdk deploy`` does (``deploy_assembly``); the result's
``settings()`` is ``Settings`` built from the stack outputs. Tests get their AWS resources this
way.

**By hand** (``provision``, ``create_queues``, ``local_aws``): the table, bucket and a runs
queue with its DLQ created through the service APIs from ``shared/dal/schema.py``. Kept only for
``switchyard dev`` (``local_aws``), which must start in a second on a machine without Node.js
or the CDK (a synth needs both and takes seconds); issue "Infrastructure as code", item 8,
moves the local stack onto the template later. The queues differ from the stack's: the runs
queue redrives straight to the DLQ (the stack has a transit queue and a DLQ function between).

Deploy a synthesized CDK cloud assembly into moto's CloudFormation, the way ``cdk deploy`` does.

``deploy_assembly`` does what the CDK CLI does against a bootstrapped account, on whatever AWS
endpoint the clients resolve to (a moto server through ``endpoint_url``/``AWS_ENDPOINT_URL``,
or moto in-process under ``mock_aws``):

1. stands in for ``cdk bootstrap``: the SSM parameter ``/cdk-bootstrap/hnb659fds/version``
   (the template's ``BootstrapVersion`` parameter and its rule read it) and the file-asset
   bucket ``cdk-hnb659fds-assets-<account>-<region>``;
2. publishes the file assets listed in ``<Stack>.assets.json`` (directories zipped, files as
   they are) and the template itself into that bucket; container images are not built (moto's
   ECS records services and task definitions but runs nothing);
3. creates the stack from the uploaded template (``TemplateURL``, as the CLI does for
   templates over 50 KB) and waits for ``CREATE_COMPLETE``, raising with the failed
   resources' reasons otherwise;
4. applies through the service APIs what moto's CloudFormation accepts but ignores
   (``fill_gaps``: DynamoDB TTL, S3 bucket notifications to SQS).

What moto's CloudFormation lacks, and what is done about it (moto 5.2):

- resource types it does not model are skipped with a warning (``AWS::ApiGatewayV2::*``,
  alarms, scaling targets and policies, queue/bucket/topic policies, the Scheduler group,
  ``AWS::Lambda::EventInvokeConfig``, ``AWS::SecretsManager::Secret``). Moto resolves a
  ``Ref`` to one as nothing, so ``moto_compatible`` rewrites every reference to a skipped
  resource in the copy of the template that is deployed: secrets are created through the
  Secrets Manager API first (``create_secrets``) and referenced by their ARN; other
  references become their name (alarms, schedule groups) or ``unsupported-in-moto-<id>``.
  The synthesized template itself is never changed;
- ``AWS::Lambda::Alias`` (every function is invoked through its ``live`` alias) is taught to
  moto in this process (``register_moto_models``);
- DynamoDB TTL and a bucket's queue notifications are accepted and ignored: applied
  afterwards (``fill_gaps``).

Moto keeps its state per process: ``reset_moto`` clears it between deployments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
import urllib.request
import warnings
import zipfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_urlsafe
from typing import Any, NamedTuple, Self

import boto3

from shared.config import Settings
from shared.dal import aws_client
from shared.dal.schema import create_bucket, create_table
from shared.journal.dynamodb import DynamoJournal

DEFAULT_MAX_RECEIVE_COUNT = 5
DLQ_RETENTION_S = 14 * 86_400  # SQS's maximum: dead letters wait two weeks for a human


class QueueUrls(NamedTuple):
    """Where ``provision`` put the runs queue and its dead-letter queue."""

    queue_url: str
    dlq_url: str


def queue_names(settings: Settings) -> tuple[str, str]:
    """The runs queue and DLQ names for a deployment (derived from its table name)."""
    return f"{settings.table_name}-runs", f"{settings.table_name}-runs-dlq"


def provision(
    settings: Settings, *, max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT
) -> QueueUrls:
    """Create the journal table, overflow bucket, runs queue and DLQ wherever the AWS endpoint
    points; returns the queue URLs (``settings.model_copy(update=urls._asdict())`` carries
    them into Settings). The runs queue redrives to the DLQ after ``max_receive_count``
    receives; its default visibility timeout is the lease period, as the workers use it."""
    create_table(aws_client("dynamodb", region=settings.region), settings.table_name)
    create_bucket(aws_client("s3", region=settings.region), settings.bucket_name)
    return create_queues(settings, max_receive_count=max_receive_count)


def create_queues(
    settings: Settings, *, max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT
) -> QueueUrls:
    sqs = aws_client("sqs", region=settings.region)
    runs_name, dlq_name = queue_names(settings)
    dlq_url: str = sqs.create_queue(
        QueueName=dlq_name, Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
    attributes = {
        "VisibilityTimeout": str(max(1, math.ceil(settings.lease_ttl_s))),
        "RedrivePolicy": json.dumps(redrive),
    }
    queue_url: str = sqs.create_queue(QueueName=runs_name)["QueueUrl"]
    # Set separately so re-provisioning with another max_receive_count updates the policy.
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
    return QueueUrls(queue_url=queue_url, dlq_url=dlq_url)


@contextlib.contextmanager
def local_aws(settings: Settings) -> Iterator[DynamoJournal]:
    """A DynamoDB+S3 journal on moto, in this process, for as long as the block runs."""
    from moto import mock_aws

    with mock_aws():
        provision(settings)
        yield DynamoJournal.from_settings(settings)


# ---- the synthesized template in moto's CloudFormation ------------------------------------

QUALIFIER = "hnb659fds"
BOOTSTRAP_VERSION_PARAMETER = f"/cdk-bootstrap/{QUALIFIER}/version"
# What a current `cdk bootstrap` writes; templates require at least 6.
BOOTSTRAP_VERSION = "30"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
TERMINAL_FAILURES = {
    "CREATE_FAILED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "DELETE_COMPLETE",
}


class DeployError(RuntimeError):
    """The stack did not reach CREATE_COMPLETE."""


@dataclass(frozen=True)
class StackArtifact:
    """One stack of a cloud assembly: its template and asset manifest."""

    name: str
    template_file: Path
    assets_file: Path | None

    def template(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.template_file.read_text())
        return loaded


@dataclass(frozen=True)
class DeployedStack:
    name: str
    stack_id: str
    region: str
    account: str
    outputs: dict[str, str]
    # logical id -> (resource type, physical id)
    resources: dict[str, tuple[str, str]]
    endpoint_url: str | None = None
    # logical id -> what moto skipped it as (its type), and the secrets created beside it
    skipped: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    assets: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def physical_ids(self, resource_type: str) -> list[str]:
        return sorted(pid for rtype, pid in self.resources.values() if rtype == resource_type)

    def settings(self, base: Settings | None = None, **updates: Any) -> Settings:
        """``base`` (default ``Settings()``) pointed at this stack's table, bucket and queues
        (from its outputs: ``infra.constants.OUTPUT_*``), with ``updates`` on top."""
        from_outputs = {
            field_name: self.outputs[output]
            for field_name, output in _SETTINGS_OUTPUTS.items()
            if output in self.outputs
        }
        return (base or Settings()).model_copy(
            update={"region": self.region, **from_outputs, **updates}
        )


# ---- what moto's CloudFormation lacks ----------------------------------------------------------

_MODELS_REGISTERED = False


def register_moto_models() -> None:
    """Teach moto's CloudFormation ``AWS::Lambda::Alias`` (moto models aliases in its Lambda
    API but not in CloudFormation) and the ``Version`` attribute of ``AWS::Lambda::Version``
    (an alias names its version by it). Every Switchyard function is invoked through its
    ``live`` alias (event-source mappings, permissions), and moto refuses a mapping to an
    alias that does not exist. Moto discovers models as subclasses of
    ``CloudFormationModel``, so this works wherever moto runs in this process (``mock_aws``
    or ``ThreadedMotoServer``), not in a moto server of another process."""
    global _MODELS_REGISTERED
    if _MODELS_REGISTERED:
        return
    from moto.awslambda.models import LambdaVersion, lambda_backends
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel

    class LambdaAliasModel(CloudFormationModel):
        def __init__(self, arn: str, name: str) -> None:
            self.arn = arn
            self.name = name

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Lambda::Alias"

        @staticmethod
        def cloudformation_name_type() -> str:
            return "Name"

        @classmethod
        def create_from_cloudformation_json(
            cls,
            resource_name: str,
            cloudformation_json: dict[str, Any],
            account_id: str,
            region_name: str,
            **kwargs: Any,
        ) -> Self:
            props = cloudformation_json["Properties"]
            version = str(props.get("FunctionVersion") or "")
            alias = lambda_backends[account_id][region_name].create_alias(
                name=props["Name"],
                function_name=props["FunctionName"],
                function_version=version if version.isdigit() else "$LATEST",
                description=props.get("Description", ""),
                routing_config=props.get("RoutingConfig") or "",
            )
            return cls(alias.arn, alias.name)

        @property
        def physical_resource_id(self) -> str:
            return self.arn

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr in ("AliasArn", "AliasName")

        def get_cfn_attribute(self, attribute_name: str) -> str:
            return self.arn if attribute_name == "AliasArn" else self.name

    del LambdaAliasModel  # registered by being a subclass

    def version_attribute(self: LambdaVersion, attribute_name: str) -> str:
        if attribute_name != "Version":
            raise NotImplementedError(attribute_name)
        return str(self.version)

    # Moto's Version model has no attributes; the alias reads ``Fn::GetAtt [V, Version]``.
    if not hasattr(LambdaVersion, "get_cfn_attribute"):
        LambdaVersion.get_cfn_attribute = version_attribute  # type: ignore[attr-defined]
    _state_machines_in_the_executing_backend()
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
    _MODELS_REGISTERED = True


def _state_machines_in_the_executing_backend() -> None:
    """Moto's CloudFormation creates ``AWS::StepFunctions::StateMachine`` in its plain Step
    Functions backend, but with ``execute_state_machine`` on, the API (and the interpreter)
    use another one: create (and delete) template state machines where the API will look."""
    from moto.stepfunctions.models import StateMachine
    from moto.stepfunctions.responses import get_backend

    def create(
        cls: type[StateMachine],
        /,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        props = cloudformation_json["Properties"]
        return get_backend(account_id, region_name).create_state_machine(
            props.get("StateMachineName", resource_name),
            props.get("DefinitionString", ""),
            props.get("RoleArn", ""),
        )

    def delete(
        cls: type[StateMachine],
        /,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> None:
        get_backend(account_id, region_name).delete_state_machine(resource_name)

    StateMachine.create_from_cloudformation_json = classmethod(create)  # type: ignore[assignment]
    StateMachine.delete_from_cloudformation_json = classmethod(delete)  # type: ignore[assignment]


def reset_moto(endpoint_url: str) -> None:
    """Drop every resource of every service: moto's state is per process, shared by all its
    servers (and ``mock_aws``) in it."""
    if not endpoint_url.startswith(("http://", "https://")):
        raise ValueError(f"not a moto server URL: {endpoint_url!r}")
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (http checked)
        response.read()


def configure_moto_server(endpoint_url: str, config: Mapping[str, Any]) -> None:
    """Set a moto server's configuration (``/moto-api/config``), e.g. Step Functions'
    ``{"stepfunctions": {"execute_state_machine": True}}``."""
    if not endpoint_url.startswith(("http://", "https://")):
        raise ValueError(f"not a moto server URL: {endpoint_url!r}")
    request = urllib.request.Request(  # noqa: S310 (http checked)
        f"{endpoint_url}/moto-api/config",
        data=json.dumps(dict(config)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (http checked)
        response.read()


# ---- reading the assembly --------------------------------------------------------------------


def stack_artifacts(assembly_dir: Path) -> list[StackArtifact]:
    """Every CloudFormation stack in ``assembly_dir`` (a ``cdk.out``), from its manifest."""
    manifest = json.loads((assembly_dir / "manifest.json").read_text())
    artifacts: dict[str, Any] = manifest.get("artifacts", {})
    stacks = []
    for artifact_id, artifact in artifacts.items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        props = artifact.get("properties", {})
        assets_file = None
        for dep in artifact.get("dependencies", []):
            dep_artifact = artifacts.get(dep, {})
            if dep_artifact.get("type") == "cdk:asset-manifest":
                assets_file = assembly_dir / dep_artifact["properties"]["file"]
        name = props.get("stackName") or artifact.get("displayName") or artifact_id
        stacks.append(StackArtifact(name, assembly_dir / props["templateFile"], assets_file))
    return stacks


def only_stack(assembly_dir: Path, name: str | None = None) -> StackArtifact:
    stacks = stack_artifacts(assembly_dir)
    if name is not None:
        stacks = [s for s in stacks if s.name == name]
    if len(stacks) != 1:
        raise DeployError(f"expected one stack in {assembly_dir}, found {[s.name for s in stacks]}")
    return stacks[0]


# ---- bootstrap and assets --------------------------------------------------------------------


_SESSIONS: dict[str | None, boto3.session.Session] = {}


def _client(service: str, region: str, endpoint_url: str | None) -> Any:
    """A client of one boto3 session per process (per access key): each new session reloads
    botocore's data, about 50 ms a client, which would be most of a storage-only deploy.
    Deploys run on one thread; the session is not shared with the product's clients."""
    key = os.environ.get("AWS_ACCESS_KEY_ID")
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = boto3.session.Session()
    return session.client(service, region_name=region, endpoint_url=endpoint_url)


def _clients(region: str, endpoint_url: str | None) -> dict[str, Any]:
    return {
        name: _client(name, region, endpoint_url)
        for name in ("sts", "ssm", "s3", "cloudformation", "secretsmanager")
    }


def template_body(template: Mapping[str, Any]) -> bytes:
    """The template as moto reads it fastest. Moto tries a pure-Python YAML parser on every
    template before JSON (0.8 s for Switchyard's); a leading tab is whitespace to JSON but an
    error to YAML's scanner at the first character, so moto goes straight to ``json.loads``."""
    return ("\t" + json.dumps(template, separators=(",", ":"))).encode()


def asset_bucket(account: str, region: str) -> str:
    return f"cdk-{QUALIFIER}-assets-{account}-{region}"


def bootstrap(clients: Mapping[str, Any], account: str, region: str) -> str:
    """What ``cdk bootstrap`` leaves that a deploy reads: the version parameter and the bucket."""
    clients["ssm"].put_parameter(
        Name=BOOTSTRAP_VERSION_PARAMETER, Value=BOOTSTRAP_VERSION, Type="String", Overwrite=True
    )
    bucket = asset_bucket(account, region)
    s3 = clients["s3"]
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    return bucket


def _substitute(text: str, account: str, region: str) -> str:
    return (
        text.replace("${AWS::AccountId}", account)
        .replace("${AWS::Region}", region)
        .replace("${AWS::Partition}", "aws")
    )


def zip_directory(path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(path).as_posix())
    return buffer.getvalue()


def publish_assets(
    artifact: StackArtifact, clients: Mapping[str, Any], account: str, region: str
) -> list[str]:
    """Upload the stack's file assets; returns the ``bucket/key`` of each object written."""
    if artifact.assets_file is None:
        return []
    manifest = json.loads(artifact.assets_file.read_text())
    base = artifact.assets_file.parent
    written = []
    for asset in manifest.get("files", {}).values():
        source = base / asset["source"]["path"]
        if asset["source"].get("packaging") == "zip" or source.is_dir():
            body = zip_directory(source)
        else:
            body = source.read_bytes()
        for destination in asset["destinations"].values():
            bucket = _substitute(destination["bucketName"], account, region)
            key = _substitute(destination["objectKey"], account, region)
            clients["s3"].put_object(Bucket=bucket, Key=key, Body=body)
            written.append(f"{bucket}/{key}")
    return written


def quiet_moto() -> None:
    """Moto logs (and warns) once per skipped resource, every time it parses the template."""
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Tried to parse AWS::", category=UserWarning)


def unsupported_resources(template: Mapping[str, Any]) -> dict[str, str]:
    """Logical id -> type of every resource moto's CloudFormation would skip."""
    from moto.cloudformation import parsing

    quiet_moto()
    register_moto_models()
    return {
        logical: str(resource.get("Type", ""))
        for logical, resource in template.get("Resources", {}).items()
        if parsing.resource_class_from_type(str(resource.get("Type", ""))) is None
    }


# Types whose ``Ref`` is a name property of their own (others get a placeholder id).
_REF_IS_NAME = {
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::Scheduler::ScheduleGroup": "Name",
    "AWS::Scheduler::Schedule": "Name",
}


def _ref_value(logical: str, resource: Mapping[str, Any]) -> Any:
    """What a ``Ref`` to a resource moto skips returns on AWS where the template says (a name
    property), else a placeholder id that says what it is."""
    name_property = _REF_IS_NAME.get(str(resource.get("Type", "")))
    name = resource.get("Properties", {}).get(name_property) if name_property else None
    return name if name is not None else f"unsupported-in-moto-{logical}"


def moto_compatible(
    template: Mapping[str, Any], substitutes: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``template`` moto can create, and the logical ids whose references changed.

    Moto resolves a ``Ref`` to a resource it skipped as nothing, which silently drops that
    value (an IAM statement naming only a secret ends up with no resource and CreateStack
    fails; ``Fn::Select`` over a split alias ARN fails), and fails on a ``Fn::GetAtt`` of one
    in an output. So every ``Ref`` of a skipped resource becomes ``substitutes[logical id]``
    when given (a resource created beside the stack, e.g. a secret's ARN), else what AWS
    would return as far as moto can compute it (``_ref_value``); every ``Fn::GetAtt`` of one
    becomes ``unsupported-in-moto-<logical id>-<attribute>``."""
    resources: Mapping[str, Any] = template.get("Resources", {})
    unsupported = unsupported_resources(template)
    refs = {logical: _ref_value(logical, resources[logical]) for logical in unsupported}
    refs.update(substitutes or {})
    changed: set[str] = set()

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in unsupported:
                changed.add(node["Ref"])
                return rewrite(refs[node["Ref"]])
            getatt = node.get("Fn::GetAtt")
            if set(node) == {"Fn::GetAtt"} and isinstance(getatt, list | str):
                logical, attribute = getatt if isinstance(getatt, list) else getatt.split(".", 1)
                if logical in unsupported:
                    changed.add(logical)
                    return f"unsupported-in-moto-{logical}-{attribute}"
            return {key: rewrite(value) for key, value in node.items()}
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    copy: dict[str, Any] = {
        section: rewrite(body) if section in ("Resources", "Outputs") else body
        for section, body in template.items()
    }
    return copy, sorted(changed)


def create_secrets(template: Mapping[str, Any], client: Any, stack_name: str) -> dict[str, str]:
    """Moto's CloudFormation skips ``AWS::SecretsManager::Secret``: create each one through the
    API instead, with a generated value when the template asks for one (as CloudFormation
    would), and return logical id -> ARN, what a ``Ref`` to it resolves to."""
    arns = {}
    for logical, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::SecretsManager::Secret":
            continue
        props = resource.get("Properties", {})
        name = props.get("Name") if isinstance(props.get("Name"), str) else None
        kwargs: dict[str, Any] = {"Name": name or f"{stack_name}-{logical}"}
        if isinstance(props.get("Description"), str):
            kwargs["Description"] = props["Description"]
        if isinstance(props.get("SecretString"), str):
            kwargs["SecretString"] = props["SecretString"]
        elif "GenerateSecretString" in props:
            kwargs["SecretString"] = token_urlsafe(32)
        try:
            arn: str = client.create_secret(**kwargs)["ARN"]
        except client.exceptions.ResourceExistsException:
            arn = client.describe_secret(SecretId=kwargs["Name"])["ARN"]
        arns[logical] = arn
    return arns


# ---- synthesizing the project's app --------------------------------------------------------


def synth_app(
    outdir: Path, *, context: Mapping[str, Any] | None = None, build_dir: Path | None = None
) -> Path:
    """Synthesize ``infra/app.py`` into ``outdir`` for tests: the Lambda package staged from
    sources only (``SWITCHYARD_BUNDLE=skip``, into ``build_dir``), no cdk-nag (tests/infra
    checks it), environment-agnostic (no ``CDK_DEFAULT_ACCOUNT``/``REGION``), so the template
    deploys into moto's account. Returns the cloud assembly directory."""
    overrides = {
        "SWITCHYARD_BUNDLE": "skip",
        "SWITCHYARD_BUILD_DIR": str(build_dir or outdir.parent / f"{outdir.name}-build"),
        "CDK_DEFAULT_ACCOUNT": None,
        "CDK_DEFAULT_REGION": None,
    }
    # jsii (started by the first aws_cdk import) prints a banner on end-of-life node majors.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
    saved = {name: os.environ.get(name) for name in overrides}
    try:
        for name, value in overrides.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        from infra.app import build_app

        app, _ = build_app(context=context, outdir=str(outdir), nag=False)
        return Path(app.synth().directory)
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


# ---- deploy ----------------------------------------------------------------------------------


def deploy_assembly(
    assembly_dir: Path,
    *,
    stack_name: str | None = None,
    deploy_as: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    parameters: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    resource_types: Collection[str] | None = None,
    event_sources: bool = False,
) -> DeployedStack:
    """Bootstrap, publish the assets, create the stack and wait for it (see the module doc).

    ``resource_types``: deploy only the template's resources of these types (``STORAGE``:
    table, buckets, queues), as the template defines them; the outputs that name only those
    resources are kept. ``event_sources``: leave the event-source mappings enabled. They are
    disabled by default: moto would run a function's code in Docker for every message (and
    fails without Docker), so tests play the function's part themselves."""
    started = time.monotonic()
    region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    artifact = only_stack(assembly_dir, stack_name)
    clients = _clients(region, endpoint_url)
    account: str = clients["sts"].get_caller_identity()["Account"]
    bucket = bootstrap(clients, account, region)
    assets = publish_assets(artifact, clients, account, region)

    name = deploy_as or artifact.name
    raw = artifact.template()
    if resource_types is not None:
        raw = select_resources(raw, resource_types)
    secrets = create_secrets(raw, clients["secretsmanager"], name)
    template, _ = moto_compatible(raw, secrets)
    template_key = f"templates/{artifact.template_file.name}"
    clients["s3"].put_object(Bucket=bucket, Key=template_key, Body=template_body(template))
    cfn = clients["cloudformation"]
    stack_id: str = cfn.create_stack(
        StackName=name,
        TemplateURL=f"https://s3.{region}.amazonaws.com/{bucket}/{template_key}",
        Parameters=[
            {"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()
        ],
        Capabilities=CAPABILITIES,
    )["StackId"]
    stack = _wait(cfn, name, timeout_s)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    resources = {
        r["LogicalResourceId"]: (r["ResourceType"], r.get("PhysicalResourceId", ""))
        for r in _paginate(cfn, "list_stack_resources", "StackResourceSummaries", StackName=name)
        if r.get("LogicalResourceId")
    }
    deployed = DeployedStack(
        name=name,
        stack_id=stack_id,
        region=region,
        account=account,
        outputs=outputs,
        resources=resources,
        endpoint_url=endpoint_url,
        skipped=unsupported_resources(raw),
        secrets=secrets,
        assets=assets,
    )
    fill_gaps(raw, deployed)
    if not event_sources:
        disable_event_sources(deployed)
    return dataclasses.replace(deployed, seconds=time.monotonic() - started)


def fill_gaps(template: Mapping[str, Any], deployed: DeployedStack) -> list[str]:
    """Apply what moto's CloudFormation accepts but ignores, through the service APIs:
    DynamoDB ``TimeToLiveSpecification`` and the SQS queue notifications of an S3 bucket's
    ``NotificationConfiguration`` (S3 then sends its ``s3:TestEvent``, as on AWS). Returns what
    was applied."""
    applied = []
    for logical, resource in template.get("Resources", {}).items():
        if logical not in deployed.resources:
            continue
        props = resource.get("Properties", {})
        physical = deployed.resources[logical][1]
        if resource.get("Type") == "AWS::DynamoDB::Table":
            ttl = props.get("TimeToLiveSpecification") or {}
            if ttl.get("Enabled") and isinstance(ttl.get("AttributeName"), str):
                ddb = _client("dynamodb", deployed.region, deployed.endpoint_url)
                ddb.update_time_to_live(
                    TableName=physical,
                    TimeToLiveSpecification={
                        "Enabled": True,
                        "AttributeName": ttl["AttributeName"],
                    },
                )
                applied.append(f"{logical}.TimeToLiveSpecification")
        elif resource.get("Type") == "AWS::S3::Bucket":
            queues = (props.get("NotificationConfiguration") or {}).get("QueueConfigurations")
            if queues:
                configurations = [_queue_notification(q, deployed) for q in queues]
                s3 = _client("s3", deployed.region, deployed.endpoint_url)
                s3.put_bucket_notification_configuration(
                    Bucket=physical,
                    NotificationConfiguration={"QueueConfigurations": configurations},
                )
                applied.append(f"{logical}.NotificationConfiguration")
    return applied


def _queue_notification(config: Mapping[str, Any], deployed: DeployedStack) -> dict[str, Any]:
    """One ``QueueConfigurations`` entry of a template's bucket, in the S3 API's shape; the
    queue is a ``Fn::GetAtt [Queue, Arn]`` of the stack or an ARN."""
    queue = config["Queue"]
    if isinstance(queue, dict):
        logical, _attribute = queue["Fn::GetAtt"]
        queue = deployed.resources[logical][1]
        if not queue.startswith("arn:"):  # a queue's physical id is its URL
            sqs = _client("sqs", deployed.region, deployed.endpoint_url)
            attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
            queue = attributes["Attributes"]["QueueArn"]
    out: dict[str, Any] = {"QueueArn": queue, "Events": [config["Event"]]}
    rules = ((config.get("Filter") or {}).get("S3Key") or {}).get("Rules")
    if rules:
        out["Filter"] = {
            "Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}
        }
    return out


def disable_event_sources(deployed: DeployedStack) -> list[str]:
    """Disable the stack's event-source mappings (see ``deploy_assembly``); returns their ids."""
    ids = deployed.physical_ids("AWS::Lambda::EventSourceMapping")
    if ids:
        client = _client("lambda", deployed.region, deployed.endpoint_url)
        for uuid in ids:
            client.update_event_source_mapping(UUID=uuid, Enabled=False)
    return ids


def template_references(node: Any) -> set[str]:
    """Logical ids a template fragment refers to (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``)."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("Ref"), str):
            found.add(node["Ref"])
        getatt = node.get("Fn::GetAtt")
        if isinstance(getatt, list) and getatt:
            found.add(str(getatt[0]))
        elif isinstance(getatt, str):
            found.add(getatt.split(".", 1)[0])
        sub = node.get("Fn::Sub")
        text = sub[0] if isinstance(sub, list) and sub else sub
        if isinstance(text, str):
            found.update(part.split("}", 1)[0].split(".", 1)[0] for part in text.split("${")[1:])
        for value in node.values():
            found |= template_references(value)
    elif isinstance(node, list):
        for item in node:
            found |= template_references(item)
    return found


def select_resources(template: Mapping[str, Any], types: Collection[str]) -> dict[str, Any]:
    """A copy of ``template`` with only the resources of ``types`` (their definitions as they
    are), the ``DependsOn`` entries and outputs that name only those, and everything else
    (parameters, rules, conditions) kept. Fails if a kept resource refers to a dropped one."""
    resources = {
        logical: dict(resource)
        for logical, resource in template.get("Resources", {}).items()
        if resource.get("Type") in types
    }
    known = set(resources) | set(template.get("Parameters", {})) | {"AWS::NoValue"}
    for logical, resource in resources.items():
        depends = resource.get("DependsOn")
        if depends is not None:
            kept = [d for d in ([depends] if isinstance(depends, str) else depends) if d in known]
            if kept:
                resource["DependsOn"] = kept
            else:
                del resource["DependsOn"]
        missing = {r for r in template_references(resource) if not r.startswith("AWS::")} - known
        if missing:
            raise DeployError(f"{logical} refers to {sorted(missing)}, not among {sorted(types)}")
    outputs = {
        name: output
        for name, output in template.get("Outputs", {}).items()
        if {r for r in template_references(output) if not r.startswith("AWS::")} <= known
    }
    return {**template, "Resources": resources, "Outputs": outputs}


def container_environment(deployed: DeployedStack, container: str) -> dict[str, str]:
    """The environment of ``container`` in the stack's (one) ECS task definition, as deployed."""
    ecs = aws_client("ecs", region=deployed.region, endpoint_url=deployed.endpoint_url)
    (arn,) = deployed.physical_ids("AWS::ECS::TaskDefinition")
    definition = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    for entry in definition["containerDefinitions"]:
        if entry["name"] == container:
            return {e["name"]: e["value"] for e in entry.get("environment", [])}
    raise KeyError(f"no container {container!r} in {arn}")


def function_environments(deployed: DeployedStack) -> dict[str, dict[str, str]]:
    """Logical id -> environment of every Lambda function of the stack, as deployed."""
    client = aws_client("lambda", region=deployed.region, endpoint_url=deployed.endpoint_url)
    out = {}
    for logical, (rtype, physical) in deployed.resources.items():
        if rtype == "AWS::Lambda::Function":
            config = client.get_function_configuration(FunctionName=physical)
            out[logical] = dict(config.get("Environment", {}).get("Variables", {}))
    return out


def _wait(cfn: Any, name: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        stack: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            return stack
        if status in TERMINAL_FAILURES or time.monotonic() > deadline:
            raise DeployError(f"stack {name} is {status}: {_failures(cfn, name)}")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _failures(cfn: Any, name: str) -> str:
    events = _paginate(cfn, "describe_stack_events", "StackEvents", StackName=name)
    failed = [
        f"{e['LogicalResourceId']} ({e['ResourceType']}): {e.get('ResourceStatusReason', '')}"
        for e in events
        if str(e.get("ResourceStatus", "")).endswith("FAILED")
    ]
    return "; ".join(failed) or "no failed resource reported"


def _paginate(client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = getattr(client, operation)(**kwargs, **({"NextToken": token} if token else {}))
        items.extend(page.get(key, []))
        token = page.get("NextToken")
        if not token:
            return items


# ---- the template, synthesized once, deployed into moto ------------------------------------

# The resources that hold state: what a test of the data layer needs from the template.
STORAGE: tuple[str, ...] = ("AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SQS::Queue")
# Where synthesized assemblies are kept between sessions (one directory per cache key).
TEMPLATE_CACHE_ENV = "SWITCHYARD_TEMPLATE_CACHE"
_ROOT = Path(__file__).resolve().parents[2]
_ASSEMBLIES: dict[str, Path] = {}
_SETTINGS_OUTPUTS = {
    "table_name": "TableName",  # infra.constants.OUTPUT_TABLE
    "bucket_name": "BucketName",  # OUTPUT_BUCKET
    "queue_url": "RunsQueueUrl",  # OUTPUT_RUNS_QUEUE_URL
    "dlq_url": "DeadLetterQueueUrl",  # OUTPUT_DLQ_URL
}


def template_key(stack_settings: Mapping[str, Any] | None = None) -> str:
    """What a synthesized assembly depends on: every file under ``infra/`` and of what it
    compiles (pipelines, agents, trigger rules, the settings' ``agent_modules``), ``cdk.json``,
    the installed CDK library and the stack settings."""
    from importlib.metadata import version

    digest = hashlib.sha256(version("aws-cdk-lib").encode())
    # The template also compiles the pipelines (and checks agents and trigger rules).
    sources = [_ROOT / "infra", _ROOT / "agents", _ROOT / "shared" / "pipelines"]
    sources += [_ROOT / "shared" / "agents", _ROOT / "shared" / "logic" / "triggers.py"]
    sources += _module_sources((stack_settings or {}).get("agent_modules") or ())
    files = sorted(
        p
        for source in sources
        for p in ([source] if source.is_file() else source.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    )
    for path in [*files, _ROOT / "cdk.json"]:
        if path.exists():
            name = path.relative_to(_ROOT) if path.is_relative_to(_ROOT) else path
            digest.update(name.as_posix().encode() + b"\0" + path.read_bytes())
    digest.update(json.dumps(stack_settings or {}, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def _module_sources(modules: Collection[str]) -> list[Path]:
    """The source of each agent module the stack compiles (a package: its directory), found
    without importing it; a module that cannot be found adds nothing (the synth will say)."""
    import importlib.util

    found: list[Path] = []
    for name in modules:
        try:
            spec = importlib.util.find_spec(str(name))
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin or not Path(spec.origin).exists():
            continue
        origin = Path(spec.origin)
        found.append(origin.parent if spec.submodule_search_locations else origin)
    return found


def synthesized_assembly(
    stack_settings: Mapping[str, Any] | None = None, *, cache_dir: Path | None = None
) -> Path:
    """``infra/app.py`` synthesized with ``stack_settings`` (the ``switchyard:settings``
    context, ``infra/config.py``) for moto (``synth_app``), once: kept in this process and on
    disk under ``cache_dir`` (default ``$SWITCHYARD_TEMPLATE_CACHE`` or ``build/cfn-moto``),
    keyed by ``template_key``. A synth takes about 8 s; a cached assembly nothing."""
    key = template_key(stack_settings)
    if key in _ASSEMBLIES and (_ASSEMBLIES[key] / "manifest.json").exists():
        return _ASSEMBLIES[key]
    base = cache_dir or Path(os.environ.get(TEMPLATE_CACHE_ENV) or _ROOT / "build" / "cfn-moto")
    final = base / key
    if not (final / "cdk.out" / "manifest.json").exists():
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=base))
        context = {"switchyard:settings": dict(stack_settings)} if stack_settings else None
        synth_app(staging / "cdk.out", context=context, build_dir=staging / "build")
        try:
            staging.rename(final)  # atomic: a concurrent synth of the same key wins or loses whole
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    _ASSEMBLIES[key] = final / "cdk.out"
    return _ASSEMBLIES[key]


def deploy_template(
    stack_settings: Mapping[str, Any] | None = None,
    *,
    endpoint_url: str | None = None,
    resource_types: Collection[str] | None = STORAGE,
    event_sources: bool = False,
    region: str | None = None,
) -> DeployedStack:
    """The stack synthesized with ``stack_settings`` (``synthesized_assembly``), deployed into
    moto at ``endpoint_url`` (a moto server), or in this process under ``mock_aws`` when None.
    By default only its table, buckets and queues (``STORAGE``: a fraction of a second; the
    whole stack, ``resource_types=None``, takes about a second more). ``.settings()`` of the
    result is ``Settings`` pointed at them. Moto keeps one state per process: deploying the
    same stage twice without a reset fails (``reset_moto``)."""
    return deploy_assembly(
        synthesized_assembly(stack_settings),
        endpoint_url=endpoint_url,
        region=region,
        resource_types=resource_types,
        event_sources=event_sources,
    )
