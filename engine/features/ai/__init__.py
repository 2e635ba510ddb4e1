"""AI providers: the interface (`provider`), the builtin analysis (`builtin`, `analysis`) and a client
of OpenAI-compatible endpoints (`openai_compatible`). `provider_from` picks one from configuration.
The runner (`runner`) serves `ai_request` and `ai_cancel`: each request's run (`run`), what
outlives a message (`background`), and what a retrying connection missed of a run (`resume`)."""

from __future__ import annotations

from engine.features.ai.builtin import BuiltinProvider
from engine.features.ai.openai_compatible import OpenAiCompatibleProvider
from engine.features.ai.provider import AiJob, AiProvider, AiStep, Complete, Failure, Progress, cell_values


def provider_from(
    base_url: str | None, api_key: str | None, model: str | None, timeout: float = 30.0
) -> AiProvider:
    """The OpenAI-compatible provider when `AI_BASE_URL`, `AI_API_KEY` and `AI_MODEL` are all set,
    else the builtin one: half a configuration is more likely a mistake than a wish to call out."""
    if base_url and api_key and model:
        return OpenAiCompatibleProvider(base_url, api_key, model, timeout=timeout)
    return BuiltinProvider()


__all__ = [
    "AiJob",
    "AiProvider",
    "AiStep",
    "BuiltinProvider",
    "Complete",
    "Failure",
    "OpenAiCompatibleProvider",
    "Progress",
    "cell_values",
    "provider_from",
]
