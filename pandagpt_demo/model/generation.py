"""Token generation as generators: sampling, a KV-cached decode loop, and streaming text.

`generate_tokens` yields token ids as they are produced; `stream_text` turns them into text
pieces, decoding the whole answer each time (SentencePiece puts a word's space in the token, so a
token decoded alone loses it) and holding back anything that might be the start of the stop text.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import torch
from torch import nn

from pandagpt_demo.config import SamplingParams


class TokenSource(Protocol):
    """Whatever turns prompt embeddings into token ids: the serving layer's engines (serving/engine.py)."""

    def generate(self, embeds: torch.Tensor, params: SamplingParams, cancel: threading.Event | None = None) -> Iterator[int]: ...


def sample_rows(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generator: torch.Generator | None,
    own: Sequence[torch.Generator | None] = (),
) -> torch.Tensor:
    """One token per row of (B, vocab) logits, each row with its own settings. -> (B,) ids.

    Greedy rows take the argmax; others sample from the nucleus (top-p) at their temperature. A
    nucleus that holds the top token alone (top-p 0.01, the demo's default, nearly always) is the
    argmax too, so the full sort runs only when some row really samples among several tokens.
    Rows draw from `generator`, except a row with its own generator in `own` (a request's seed):
    it draws alone, and only when it samples, so its tokens do not depend on the batch it is in.
    """
    argmax = logits.argmax(dim=-1)
    if all(p.greedy for p in params):
        return argmax
    device = logits.device
    greedy = torch.tensor([p.greedy for p in params], device=device)
    temperature = torch.tensor([1.0 if p.greedy else p.temperature for p in params], device=device)
    temperature.clamp_(min=torch.finfo(torch.float32).tiny)  # as a float32, 1e-305 would be 0
    top_p = torch.tensor([p.top_p for p in params], device=device)
    scores = logits.float()
    # Shifted to a top score of 0 before the division: a temperature near 0 then makes the others
    # -inf rather than the top one inf (inf - inf is NaN in the softmax).
    probs = torch.softmax((scores - scores.max(dim=-1, keepdim=True).values) / temperature[:, None], dim=-1)
    draws = (~(greedy | (probs.max(dim=-1).values >= top_p))).tolist()  # the one host sync: which rows sample
    if not any(draws):
        return argmax
    own = list(own) or [None] * len(params)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p[:, None]
    outside[:, 0] = False  # the top token always stays
    nucleus = sorted_probs.masked_fill(outside, 0.0)
    if any(draw and mine is None for draw, mine in zip(draws, own)):
        sampled = order.gather(-1, torch.multinomial(nucleus, 1, generator=generator)).squeeze(-1)
    else:
        sampled = order[:, 0].clone()
    for row, (draw, mine) in enumerate(zip(draws, own)):
        if draw and mine is not None:
            sampled[row] = order[row : row + 1].gather(-1, torch.multinomial(nucleus[row : row + 1], 1, generator=mine))[0, 0]
    return torch.where(greedy, argmax, sampled)


def sample_next(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """The next token from (vocab,) logits."""
    return int(sample_rows(logits[None], [params], generator)[0])


@torch.inference_mode()
def generate_tokens(
    llm: nn.Module,
    inputs_embeds: torch.Tensor,
    params: SamplingParams,
    eos_token_id: int | None,
    cancel: threading.Event | None = None,
) -> Iterator[int]:
    """Yield up to `params.max_new_tokens` token ids after the (1, L, H) prompt embeddings.

    Stops at EOS (not yielded) or when `cancel` is set; the caller stops at the stop text simply
    by no longer iterating. A limit below 1 yields nothing and runs no prefill.
    """
    if params.max_new_tokens < 1:
        return
    generator = None
    if params.seed is not None and not params.greedy:
        generator = torch.Generator(device=inputs_embeds.device).manual_seed(params.seed)
    output = llm(inputs_embeds=inputs_embeds, use_cache=True)
    for produced in range(1, params.max_new_tokens + 1):
        if cancel is not None and cancel.is_set():
            return
        token = sample_next(output.logits[0, -1], params, generator)
        if token == eos_token_id:
            return
        yield token
        if produced == params.max_new_tokens:
            return  # no forward pass for a token nobody will take
        step = torch.tensor([[token]], device=inputs_embeds.device)
        output = llm(input_ids=step, past_key_values=output.past_key_values, use_cache=True)


def partial_stop(text: str, stop: str) -> int:
    """The length of the longest tail of `text` that begins `stop` (0: none): what to hold back."""
    for keep in range(min(len(stop) - 1, len(text)), 0, -1):
        if stop.startswith(text[-keep:]):
            return keep
    return 0


def stream_text(tokenizer, tokens: Iterable[int], stop_text: str) -> Iterator[str]:
    """Yield text pieces of the answer; never yields `stop_text` or what follows it.

    Held back until it is certain: a tail that could begin the stop text, trailing whitespace
    (the answer is stripped, as the original's), and an incomplete UTF-8 character (LLaMA spells
    characters outside its vocabulary as byte tokens, decoded as U+FFFD until all have arrived).
    """
    ids: list[int] = []
    shown = 0
    for token in tokens:
        ids.append(token)
        text = tokenizer.decode(ids, skip_special_tokens=True).lstrip()
        stop_at = text.find(stop_text)
        if stop_at >= 0:
            final = text[:stop_at].rstrip()
            if len(final) > shown:
                yield final[shown:]
            return
        safe = len(text.rstrip())
        if keep := partial_stop(text, stop_text):
            safe = min(safe, len(text[:-keep].rstrip()))
        safe = len(text[:safe].rstrip("\ufffd").rstrip())
        if safe > shown:
            yield text[shown:safe]
            shown = safe
    final = tokenizer.decode(ids, skip_special_tokens=True).strip()
    if len(final) > shown:
        yield final[shown:]
