"""The engine seam: both engines take plain data, count what they did, and refuse work once closed."""

from __future__ import annotations

import pytest

from pandagpt_demo.config import SamplingParams, ServingConfig
from pandagpt_demo.errors import Unavailable
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.batching import BatchedDecoder
from pandagpt_demo.serving.engine import Engine
from pandagpt_demo.serving.inline import InlineEngine
from pandagpt_demo.serving.start import start_engine

GREEDY = SamplingParams(max_new_tokens=6, temperature=0.0)


def prompt(model: PandaGPT, question: str):
    conversation = Conversation()
    conversation.ask(question)
    return model.prompt_embeds(conversation, None)


@pytest.mark.parametrize("serving", [ServingConfig.inline(), ServingConfig(max_batch=4, max_waiting=4)], ids=["inline", "batched"])
def test_both_engines_serve_the_same_tokens_count_them_and_close(tiny_model: PandaGPT, serving: ServingConfig) -> None:
    engine = start_engine(tiny_model, serving)
    assert isinstance(engine, Engine) and isinstance(engine, InlineEngine if serving.max_batch is None else BatchedDecoder)
    try:
        assert engine.ready and engine.stats().tokens == 0
        tokens = list(engine.generate(prompt(tiny_model, "Count with me"), GREEDY))
        reference = list(start_engine(tiny_model, ServingConfig.inline()).generate(prompt(tiny_model, "Count with me"), GREEDY))
        assert tokens == reference and len(tokens) == GREEDY.max_new_tokens
        stats = engine.stats()
        assert stats.tokens == len(tokens) and stats.steps >= 1 and stats.waiting == 0 and stats.active in (0, 1)
    finally:
        engine.close()
    assert not engine.ready
    with pytest.raises(Unavailable):
        list(engine.generate(prompt(tiny_model, "Too late"), GREEDY))
