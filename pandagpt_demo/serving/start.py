"""Building the engine for a loaded model: which kind, its static slot, and the compiling warm-up.

The app wires model and engine together here; `PandaGPT` itself never owns a server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

from pandagpt_demo.config import SamplingParams, ServingConfig
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.modalities import IMAGE_SIZE, Modality
from pandagpt_demo.model.pandagpt import PandaGPT

from .batching import BatchedDecoder
from .engine import Engine
from .inline import InlineEngine
from .static_decode import StaticSlot

log = logging.getLogger(__name__)


def start_engine(model: PandaGPT, serving: ServingConfig = ServingConfig(), progress: Callable[[str], None] = lambda step: None) -> Engine:
    """The continuous-batching engine for `serving.max_batch` concurrent answers, or (None) the inline one.

    On CUDA a request decoding alone uses a static cache (static_decode.py), and unless
    `config.run.compile` is off both kinds of step are compiled, here and now, by a warm-up.
    """
    eos = model.tokenizer.eos_token_id
    if serving.max_batch is None:
        return InlineEngine(model.llm, eos, serving.stall_timeout, serving.answer_timeout)
    cuda = model.device.type == "cuda"
    compile_steps = cuda and model.config.run.compile
    slot = StaticSlot(model.llm, model.config.spec.context_length, compile_step=compile_steps) if cuda else None
    backend = "inductor" if compile_steps else None
    decoder = BatchedDecoder(
        model.llm,
        eos,
        serving.max_batch,
        serving.max_waiting,
        slot=slot,
        compile_backend=backend,
        batch_spare=serving.batch_spare,
        stall_timeout=serving.stall_timeout,
        answer_timeout=serving.answer_timeout,
    )
    if compile_steps:
        progress("compiling the decode steps (a few minutes on a first start, cached after)")
        warm_up(model, decoder)
    elif model.device.type == "cpu":
        progress("warming up")
        warm_up_once(model, decoder)
    return decoder


def _question_embeds(model: PandaGPT, question: str) -> torch.Tensor:
    conversation = Conversation(model.config.spec.prompt)
    conversation.ask(question)
    return model.prompt_embeds(conversation, None)


def warm_up_once(model: PandaGPT, decoder: BatchedDecoder) -> None:
    """One short answer in the batch and one image through ImageBind before the app says it is ready:
    the first pass of each touches every weight page and sets up the CPU kernels, seconds at 7B
    that would otherwise fall inside the first user's answer."""
    start = time.perf_counter()
    decoder.warm_up([_question_embeds(model, "Hi")], SamplingParams(max_new_tokens=2, temperature=0.0), False)
    model.encode(Modality.IMAGE, torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE))  # an image as the loader makes it
    log.info("warm-up: one answer and one image in %.1f s", time.perf_counter() - start)


def warm_up(model: PandaGPT, decoder: BatchedDecoder) -> None:
    """Run every kind of decode step once: alone in the slot, alone in the batch, in a batch of
    equal lengths, in a padded batch (a batch of one row is its own shape to the compiler)."""
    short, long = _question_embeds(model, "Hi"), _question_embeds(model, "Hello! What can you do for me today?")
    params = SamplingParams(max_new_tokens=4, temperature=0.0)
    kinds = {
        "alone (the slot)": ([short], True),
        "two rows": ([short, short], True),
        "two rows, padded": ([short, long], True),
        "three rows, padded": ([short, short, long], True),
        "one row in the batch": ([short], False),
    }
    for kind, (prompts, use_slot) in kinds.items():
        start = time.perf_counter()
        decoder.warm_up(prompts, params, use_slot)
        log.info("warm-up: %s in %.1f s", kind, time.perf_counter() - start)
