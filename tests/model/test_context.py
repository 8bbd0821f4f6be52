"""Fitting a conversation into the context: the original's rule (drop the oldest turn and tokenize
the whole prompt again, until it fits), with work bounded by the context rather than the history."""

from __future__ import annotations

import random

import pytest

from pandagpt_demo.config import ModelConfig
from pandagpt_demo.errors import PromptTooLong
from pandagpt_demo.model.context import fit_context
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.pandagpt import PandaGPT

LIMIT = 120


@pytest.fixture(scope="module")
def model(tiny_config: ModelConfig) -> PandaGPT:
    return PandaGPT.load(tiny_config.updated(context_length=LIMIT))


def count_with(model: PandaGPT, with_vector: bool, seen: list[int] | None = None):
    """The exact prompt length, as PandaGPT.fit counts it; `seen` gets each counted prompt's characters."""

    def count(kept: Conversation) -> int:
        if seen is not None:
            parts = kept.prompt_parts(with_vector)
            seen.append(len(parts.before) + len(parts.after))
        before, after = model.prompt_ids(kept, with_vector)
        return len(before) + len(after) + int(with_vector)

    return count


def original_fit(model: PandaGPT, conversation: Conversation, with_vector: bool, max_new_tokens: int) -> tuple[int, int]:
    """The rule as the original demo applies it, one dropped turn and one whole tokenization at a time."""
    count, dropped = count_with(model, with_vector), 0
    while True:
        used = count(conversation)
        if used + max_new_tokens <= LIMIT or len(conversation.turns) < 2:
            break
        conversation.drop_oldest()
        dropped += 1
    if used >= LIMIT:
        raise PromptTooLong("too long")
    return dropped, min(max_new_tokens, LIMIT - used)


def conversation_of(rng: random.Random, turns: int) -> Conversation:
    words = ["the", "picture", "dog", "barks", "?", "ÿ", "空", "🙂", "###", "Human:", "\n", "  ", "sunset", "a" * 7]
    conversation = Conversation()
    for index in range(turns):
        long = index == turns - 1 and rng.random() < 0.15  # a last question the context may not hold
        conversation.ask(" ".join(rng.choice(words) for _ in range(rng.randint(0, 150 if long else 25))))
        if index < turns - 1 or rng.random() < 0.2:
            conversation.answer(" ".join(rng.choice(words) for _ in range(rng.randint(0, 25))))
    return conversation


def test_the_cut_is_the_originals_for_every_conversation(model: PandaGPT) -> None:
    rng = random.Random(7)
    for trial in range(300):
        turns, with_vector, max_new_tokens = rng.randint(1, 14), rng.random() < 0.5, rng.randint(1, 80)
        conversation = conversation_of(rng, turns)
        if conversation.turns[-1].answer is not None:
            continue  # a fit is asked for an open question
        reference = conversation.copy()
        try:
            expected = original_fit(model, reference, with_vector, max_new_tokens)
        except PromptTooLong:
            with pytest.raises(PromptTooLong):
                model.fit(conversation, with_vector, max_new_tokens)
            continue
        fit = model.fit(conversation, with_vector, max_new_tokens)
        assert (fit.dropped_turns, fit.max_new_tokens) == expected, f"trial {trial}"
        assert conversation.turns == reference.turns


def test_a_long_history_is_cut_tokenizing_only_prompts_the_context_could_hold(model: PandaGPT) -> None:
    conversation = Conversation()
    for index in range(10_000):
        conversation.ask(f"Question {index} about the picture?")
        conversation.answer(f"Answer {index}.")
    conversation.ask("And now?")
    seen: list[int] = []
    fit = fit_context(conversation, True, 20, LIMIT, count_with(model, True, seen), model.chars_per_token)
    assert conversation.turns[-1].question == "And now?" and fit.dropped_turns == 10_001 - len(conversation.turns)
    assert len(seen) <= 2 + 14, "a binary search, not a turn at a time"
    assert max(seen) < LIMIT * model.chars_per_token, "no prompt longer than the context could hold is tokenized"


def test_a_question_too_long_for_any_tokenizer_is_refused_without_tokenizing_it(model: PandaGPT) -> None:
    conversation = Conversation()
    conversation.ask("word " * 1_000_000)
    seen: list[int] = []
    with pytest.raises(PromptTooLong, match=f"at least .* tokens and the model's context holds {LIMIT}"):
        fit_context(conversation, False, 10, LIMIT, count_with(model, False, seen), model.chars_per_token)
    assert seen == []
