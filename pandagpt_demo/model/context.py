"""Fitting a conversation into the model's context: drop the oldest turns, then shorten the answer.

The rule is the original demo's: drop the oldest turns until prompt and answer fit, never the open
question; if the question alone leaves too little room, shorten the answer; if it leaves none,
refuse it. Done as the rule reads (re-tokenize the whole prompt after each dropped turn) it is
quadratic in the history: 10,001 turns held a worker for minutes. Here no text is tokenized that
cannot fit: a token covers at most `chars_per_token` characters (the tokenizer's longest piece), so
a prompt of more characters than the context times that is too long before it is tokenized. The
cut is then found by binary search among the prompts that might fit, each tokenized whole (the
exact count, as the prompt will be built), so the work is bounded by the context, not the history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from pandagpt_demo.errors import PromptTooLong

from .conversation import Conversation


@dataclass
class ContextFit:
    """What had to give way for the prompt and the answer to fit in the context."""

    dropped_turns: int
    max_new_tokens: int


def longest_piece(vocabulary: dict[str, int]) -> int:
    """The most characters one token can stand for: the longest piece of the vocabulary (a piece's
    space marker and byte-level characters stand for at least one character each)."""
    return max(len(piece) for piece in vocabulary)


def fit_context(
    conversation: Conversation, with_vector: bool, max_new_tokens: int, limit: int, count: Callable[[Conversation], int], chars_per_token: int
) -> ContextFit:
    """Drop the oldest turns of `conversation` (in place) so that its prompt and `max_new_tokens`
    fit in `limit` tokens, or shorten the answer when only the open question is left.
    `count(c)`: the exact length in tokens of c's prompt (with the vector if `with_vector`)."""
    turns = conversation.turns
    last = len(turns) - 1
    at_least = [chars // chars_per_token for chars in conversation.prompt_chars(with_vector)]  # per first kept turn
    if at_least[last] >= limit:
        raise PromptTooLong(f"The question is too long: the prompt needs at least {at_least[last]} tokens and the model's context holds {limit}.")

    @cache  # the search's last probe is the cut: it is not tokenized again
    def used(first: int) -> int:
        return count(Conversation(conversation.template, turns[first:]))

    def fits(first: int) -> bool:
        return used(first) + max_new_tokens <= limit

    # The oldest turn that might be kept: older ones make the prompt too long by their characters alone.
    low = next(first for first in range(last + 1) if at_least[first] + max_new_tokens <= limit or first == last)
    first = last
    if fits(last):  # the smallest `first` that fits, between `low` and `last`
        high = last
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if fits(middle) else (middle + 1, high)
        first = high
    tokens = used(first)
    if tokens >= limit:
        raise PromptTooLong(f"The question is too long: the prompt needs {tokens} tokens and the model's context holds {limit}.")
    if first:
        conversation.drop_oldest(first)
    return ContextFit(dropped_turns=first, max_new_tokens=min(max_new_tokens, limit - tokens))
