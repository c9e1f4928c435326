"""Auth: the Lambda authorizer of the HTTP API.

``Authorization: Bearer <key>`` → the key's tenant (``functions/authorizer/handler.py``):
payload format 2.0 with simple responses, the Authorization header as the identity source
(a request without it is refused with 401 by API Gateway, without invoking anything).
Results are cached per header for ``api.authorizer_cache_ttl_s`` (0 by default, so a revoked
key stops working at once). The function may only read API-key items of the table.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from constructs import Construct

from infra import constants as c
from infra.config import StackSettings
from infra.constructs.function import PythonFunction


class Auth(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: StackSettings) -> None:
        super().__init__(scope, id)
        self.function = PythonFunction(
            self,
            c.AUTHORIZER_FUNCTION_ID,
            settings=settings,
            function=settings.functions.authorizer,
            function_dir="authorizer",
            handler=c.AUTHORIZER_HANDLER,
            service="authorizer",
            description="Switchyard: API key to tenant (HTTP API Lambda authorizer)",
        )
        self.authorizer = authorizers.HttpLambdaAuthorizer(
            "ApiKeyAuthorizer",
            self.function.alias,
            authorizer_name=f"{settings.resource_prefix}-api-key",
            identity_source=[f"$request.header.{c.AUTHORIZATION_HEADER}"],
            response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            results_cache_ttl=Duration.seconds(settings.api.authorizer_cache_ttl_s),
        )


__all__ = ["Auth"]
