"""The ranges every client is held to: the page's sliders, `/chat`'s and `/v1`'s numbers alike,
and the one policy their media URLs are fetched under. Each refusal names the setting."""

from __future__ import annotations

from dataclasses import dataclass, field

from pandagpt_demo.app.public.fetcher import FetchPolicy
from pandagpt_demo.config import SamplingParams
from pandagpt_demo.errors import BadSetting


@dataclass(frozen=True)
class AnswerSettings:
    """Defaults of the sampling sliders (those of the original demo) and the largest values the
    sliders offer; API callers are held to the same ranges."""

    max_new_tokens: int = SamplingParams.max_new_tokens
    top_p: float = SamplingParams.top_p
    temperature: float = SamplingParams.temperature
    max_new_tokens_limit: int = 1024
    temperature_limit: float = 2.0
    weight_limit: float = 2.0
    max_files: int = 16  # files one chat may attach (all are held on disk while it lives)
    remote: FetchPolicy = field(default_factory=FetchPolicy)  # how a media URL is fetched, whoever gives it (/v1, /chat, MCP)

    def params(self, max_new_tokens: object, top_p: object, temperature: object) -> SamplingParams:
        tokens = number("max_new_tokens", max_new_tokens, 1, self.max_new_tokens_limit)
        if tokens != int(tokens):
            raise BadSetting(f"max_new_tokens must be a whole number, not {max_new_tokens!r}.")
        return SamplingParams(
            max_new_tokens=int(tokens),
            top_p=number("top_p", top_p, 0, 1),
            temperature=number("temperature", temperature, 0, self.temperature_limit),
        )

    def weight(self, name: str, value: object) -> float:
        return number(f"The weight of {name}", value, -self.weight_limit, self.weight_limit)


def number(name: str, value: object, low: float, high: float) -> float:
    """`value` as a float within [low, high], or a BadSetting that says which setting is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadSetting(f"{name} must be a number from {low:g} to {high:g}, not {value!r}.")
    return float(value)
