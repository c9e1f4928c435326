"""The HTTP API Lambda: ``handler.handler`` is the entry point, ``app`` holds the routes."""
