"""The Fargate worker: long-polls the runs queue and executes runs durably.

- ``workers.main``: the entry point (``python -m workers.main``): settings, services, signals.
- ``workers.consumer``: the SQS consumer loop (receive → ``shared.logic`` → ack late).
- ``workers.health``: the liveness file the loop stamps and the ECS health check reads
  (``python -m workers.health``).
"""
