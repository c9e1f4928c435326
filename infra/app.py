"""The CDK app: ``cdk synth`` / ``cdk deploy`` run ``python -m infra.app`` (cdk.json).

It builds one stack, ``Switchyard-<stage>``, from the settings in the CDK context
(``infra/config.py``), and checks it with cdk-nag's AwsSolutions pack on every synth: a
finding that is neither fixed nor acknowledged with a written reason fails the synth, and the
report lands in ``cdk.out/validation-report.json``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from infra.config import StackSettings
from infra.stack import SwitchyardStack

# Feature flags the stack relies on (applied unless the context already sets them).
FEATURE_FLAGS: dict[str, Any] = {
    # Server access logs are delivered through a bucket policy, not the legacy ACL (the
    # buckets enforce bucket-owner object ownership, which disables ACLs).
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    # The worker service leaves DesiredCount to auto scaling: a deploy must not reset it.
    "@aws-cdk/aws-ecs:removeDefaultDesiredCount": True,
}


def build_app(
    *,
    context: Mapping[str, Any] | None = None,
    outdir: str | None = None,
    settings: StackSettings | None = None,
    nag: bool = True,
) -> tuple[App, SwitchyardStack]:
    """The app and its stack, not yet synthesized (tests pass ``outdir`` and ``context``)."""
    app = App(context=dict(context) if context else None, outdir=outdir)
    for flag, value in FEATURE_FLAGS.items():
        if app.node.try_get_context(flag) is None:
            app.node.set_context(flag, value)
    settings = settings or StackSettings.from_context(app.node.try_get_context)
    account = settings.account or os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = settings.region or os.environ.get("CDK_DEFAULT_REGION")
    env = Environment(account=account, region=region) if account or region else None
    stack = SwitchyardStack(app, settings.stack_name, settings=settings, env=env)
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app, stack


def main() -> None:
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
