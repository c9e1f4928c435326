"""Api: the HTTP API (API Gateway HTTP API → the API function, payload format 2.0).

Routes:

- ``ANY /v1/{proxy+}`` → the API function, behind the Lambda authorizer;
- ``GET /v1/health`` and ``GET /v1/openapi.json`` → the same function, no authorizer
  (``functions/api/app.py`` ``PUBLIC_ROUTES``). API Gateway prefers these exact routes
  over the greedy one.

The ``$default`` stage deploys automatically, throttles every route to the stage default
(``api.throttle_rate`` / ``api.throttle_burst``) and writes one JSON access-log line per
request (with the tenant the authorizer resolved) to its own log group.
"""

from __future__ import annotations

import json

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from constructs import Construct

from infra import constants as c
from infra.config import StackSettings
from infra.constructs import acknowledge
from infra.constructs.function import PythonFunction, log_group

# One JSON object per request. $context.authorizer.tenant is the authorizer's context.
ACCESS_LOG_FORMAT: dict[str, str] = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
    "tenant": "$context.authorizer.tenant",
    "userAgent": "$context.identity.userAgent",
}


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: StackSettings,
        authorizer: authorizers.HttpLambdaAuthorizer,
    ) -> None:
        super().__init__(scope, id)
        self.function = PythonFunction(
            self,
            c.API_FUNCTION_ID,
            settings=settings,
            function=settings.functions.api,
            function_dir="api",
            handler=c.API_HANDLER,
            service="api",
            description="Switchyard: the HTTP API (runs, events, threads, agents, usage)",
        )
        self.http_api = apigwv2.HttpApi(
            self,
            c.HTTP_API_ID,
            api_name=f"{settings.resource_prefix}-api",
            description=f"Switchyard {settings.stage} HTTP API",
            create_default_stage=False,
        )
        self.access_logs = log_group(self, "AccessLogs", settings, days=settings.log_retention_days)
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=settings.api.throttle_rate, burst_limit=settings.api.throttle_burst
            ),
        )
        cfn_stage = self.stage.node.default_child
        assert isinstance(cfn_stage, apigwv2.CfnStage)
        cfn_stage.access_log_settings = apigwv2.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.access_logs.log_group_arn,
            format=json.dumps(ACCESS_LOG_FORMAT, separators=(",", ":")),
        )

        integration = integrations.HttpLambdaIntegration(
            "ApiIntegration",
            self.function.alias,
            payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
            timeout=Duration.seconds(min(settings.functions.api.timeout_s, 29)),
        )
        self.proxy_routes = self.http_api.add_routes(
            path=c.PROXY_ROUTE_PATH,
            methods=[apigwv2.HttpMethod.ANY],
            integration=integration,
            authorizer=authorizer,
        )
        self.public_routes: list[apigwv2.HttpRoute] = []
        for path in c.PUBLIC_ROUTE_PATHS:
            self.public_routes.extend(
                self.http_api.add_routes(
                    path=path,
                    methods=[apigwv2.HttpMethod.GET],
                    integration=integration,
                    authorizer=apigwv2.HttpNoneAuthorizer(),
                )
            )
        for route in self.public_routes:
            acknowledge(
                route,
                "APIG4",
                "Public by design: the health check and the OpenAPI document carry no tenant "
                "data (functions/api/app.py PUBLIC_ROUTES); every other route has the "
                "authorizer.",
            )

    @property
    def url(self) -> str:
        """The API's base URL (the ``$default`` stage), ending with ``/``."""
        return self.stage.url


__all__ = ["ACCESS_LOG_FORMAT", "Api"]
