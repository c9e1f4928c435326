"""The local stack (`switchyard dev`, `make dev`): all of Switchyard on one machine, offline.

moto serves every AWS service, provisioned from the synthesized CDK template; a local gateway
turns HTTP into API Gateway v2 events for the real API handler and authorizer; worker
processes are supervised like ECS tasks; pollers play the Lambda event-source mappings and a
scheduler fires the template's schedules. See docs/local.md.
"""
