"""The HTTP API's Lambda authorizer: API key → tenant."""
