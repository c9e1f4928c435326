"""Secrets reach tools through the context and never leave through the journal or events."""

from __future__ import annotations

from shared.errors import ProviderError
from shared.models.run import RunStatus
from shared.runtime.redact import MASK, MIN_SECRET_CHARS, Redactor
from tests.support.runtime_kit import SECRET, Harness, Toolbox
from tests.support.scripted_provider import ScriptedProvider, plan

OTHER_SECRET = "db-password-XYZ-987654"
SECRETS = {"api_key": SECRET, "db": OTHER_SECRET}


def test_redactor_masks_every_occurrence() -> None:
    r = Redactor(SECRETS.values())
    text = f"a {SECRET} b {OTHER_SECRET} c {SECRET}"
    assert r.redact(text) == f"a {MASK} b {MASK} c {MASK}"
    assert r.redact("nothing to hide") == "nothing to hide"


def test_redactor_masks_longer_secrets_first() -> None:
    short, long = "abcdef", "abcdefghij"
    assert Redactor([short, long]).redact(f"x{long}x") == f"x{MASK}x"


def test_redactor_ignores_values_too_short_to_be_secrets() -> None:
    tiny = "a" * (MIN_SECRET_CHARS - 1)
    assert Redactor([tiny, ""]).redact(f"{tiny} banana") == f"{tiny} banana"


async def _all_text(h: Harness, run_id: str, provider: ScriptedProvider) -> str:
    parts = [r.model_dump_json() for r in await h.records(run_id)]
    parts += [e.model_dump_json() for e in await h.events(run_id)]
    parts.append((await h.journal.get_run(run_id)).model_dump_json())
    parts += [req.model_dump_json() for req in provider.requests]  # what the model saw
    return "\n".join(parts)


async def test_secrets_never_leave_through_tools(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("reveal", "leak_error", "leak_details")], secrets=SECRETS)
    provider = ScriptedProvider(
        responder=plan([("reveal", {}), ("leak_error", {}), ("leak_details", {})], "done")
    )
    run_id = await h.submit()
    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.SUCCEEDED
    # The tools did get the secret.
    assert [c.ctx.secret("api_key") for c in toolbox.invocations] == [SECRET] * 3

    reveal, leak_error, leak_details = provider.requests[1].messages[-1]["content"]
    assert reveal["content"] == f"the key is {MASK}"
    assert leak_error == {
        "type": "tool_result",
        "tool_use_id": "toolu_01_1",
        "content": f"Error: RuntimeError: auth failed for key {MASK}",
        "is_error": True,
    }
    assert leak_details["is_error"] is True
    assert leak_details["content"].startswith("Error: upstream refused")
    assert MASK in leak_details["content"]

    everything = await _all_text(h, run_id, provider)
    assert SECRET not in everything
    assert OTHER_SECRET not in everything


async def test_secret_in_a_provider_error_does_not_reach_the_run_error(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup")], secrets=SECRETS)
    provider = ScriptedProvider(responder=plan("unused"))
    provider.fail_at(1, ProviderError(f"401 invalid x-api-key {SECRET}", status=401))
    run_id = await h.submit()
    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error.code == "provider_error"
    assert run.error.message == f"401 invalid x-api-key {MASK}"
    assert SECRET not in await _all_text(h, run_id, provider)


async def test_secrets_are_not_in_the_prompt(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("reveal")], secrets=SECRETS)
    provider = ScriptedProvider(responder=plan("done"))
    await h.runtime(provider).execute(await h.submit())
    request = provider.requests[0]
    assert SECRET not in request.model_dump_json()
    assert SECRET not in request.system
