"""Tiny agent modules loaded by import path, as SWITCHYARD_AGENT_MODULES would list them."""
