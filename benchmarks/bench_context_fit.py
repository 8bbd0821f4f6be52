"""Fitting a long history into the context: the original's loop against `fit_context`, same run.

    python benchmarks/bench_context_fit.py                       # 1,001 to 10,001 turns
    python benchmarks/bench_context_fit.py --turns 101 1001 --original-up-to 1001

The tiny model's tokenizer is Vicuna's (the real 32,000-piece Llama vocabulary), the context 2,048
tokens as the released weights have. The original re-tokenizes the whole prompt after each dropped
turn (quadratic in the history); it is timed only up to `--original-up-to` turns (4,001 took about
20 s, 10,001 minutes). Both must keep the same turns; the ratio is the original's time over ours.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.weights.synthetic import make_tiny

CONTEXT = 2048
MAX_NEW_TOKENS = 256


def history(turns: int) -> Conversation:
    conversation = Conversation()
    for index in range(turns - 1):
        conversation.ask(f"Question {index}: what is in the picture, and what sound goes with it?")
        conversation.answer(f"Answer {index}: a sunset over the sea, with waves and a dog barking far away.")
    conversation.ask("And now?")
    return conversation


def original_fit(model: PandaGPT, conversation: Conversation) -> int:
    """The original demo's rule as it ran it: drop the oldest turn, tokenize the whole prompt again."""
    dropped = 0
    while True:
        before, after = model.prompt_ids(conversation, True)
        if len(before) + len(after) + 1 + MAX_NEW_TOKENS <= CONTEXT or len(conversation.turns) < 2:
            return dropped
        conversation.drop_oldest()
        dropped += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, nargs="+", default=[1_001, 4_001, 10_001])
    parser.add_argument("--original-up-to", type=int, default=4_001, help="time the original only up to this many turns")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = PandaGPT.load(make_tiny(Path(folder) / "tiny").updated(context_length=CONTEXT))
    print(f"{'turns':>7} {'original s':>11} {'fit_context s':>14} {'ratio':>8} {'kept':>5}")
    for turns in args.turns:
        ours = history(turns)
        start = time.perf_counter()
        fit = model.fit(ours, True, MAX_NEW_TOKENS)
        fast = time.perf_counter() - start
        slow, ratio = "-", "-"
        if turns <= args.original_up_to:
            theirs = history(turns)
            start = time.perf_counter()
            dropped = original_fit(model, theirs)
            seconds = time.perf_counter() - start
            assert dropped == fit.dropped_turns and theirs.turns == ours.turns, "both keep the same turns"
            slow, ratio = f"{seconds:.3f}", f"{seconds / fast:.0f}x"
        print(f"{turns:>7} {slow:>11} {fast:>14.4f} {ratio:>8} {len(ours.turns):>5}", flush=True)


if __name__ == "__main__":
    main()
