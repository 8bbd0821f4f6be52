"""Answer each: n files' answers and the weighted sum's, decoded together, against the same n + 1
answers asked one after another (what a user of any other chat does), same model, engine and run.

    python benchmarks/bench_each.py                      # tiny model on the CPU, 4 files, 64 tokens
    python benchmarks/bench_each.py --new-tokens 128 --repeats 5

Both ways give the same greedy tokens (checked here); the ratio is one-after-another's time over
Answer each's. The tiny model's files are written here on first use (`make-tiny`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path

from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.app.conversation.each import answer_each
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.config import EXAMPLES_FILE, SamplingParams, ServingConfig
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.start import start_engine
from pandagpt_demo.weights.synthetic import make_tiny

EXAMPLES = EXAMPLES_FILE.parent
FILES = [
    ("sunset.jpg", Modality.IMAGE),
    ("dog_bark.wav", Modality.AUDIO),
    ("thermal_person.png", Modality.THERMAL),
    ("rain.wav", Modality.AUDIO),
]
QUESTION = "What is this?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--files", type=int, default=4, choices=range(1, len(FILES) + 1))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = PandaGPT.load(make_tiny(Path(tempfile.mkdtemp()) / "tiny"))
    engine = start_engine(model, ServingConfig(max_batch=16))
    greedy = SamplingParams(max_new_tokens=args.new_tokens, temperature=0.0)
    attached = [Attachment.of(EXAMPLES / name, kind) for name, kind in FILES[: args.files]]
    session = ChatSession()
    deque(session.ask(model, engine, QUESTION, greedy, attached=attached), maxlen=0)  # the chat; every vector cached

    def together() -> list[str]:
        return [row.text for row in deque(answer_each(session, model, engine, args.new_tokens), maxlen=1)[0]]

    def one_after_another() -> list[str]:
        texts = []
        for attachment in attached:  # each file alone, then all of them, as separate questions
            alone = ChatSession(cache=session.cache)  # the same cached vectors: only decoding is compared
            texts.append(deque(alone.ask(model, engine, QUESTION, greedy, attached=[attachment]), maxlen=1)[0])
        everything = ChatSession(cache=session.cache)
        texts.append(deque(everything.ask(model, engine, QUESTION, greedy, attached=attached), maxlen=1)[0])
        return texts

    assert together() == one_after_another(), "Answer each must give the answers asked one by one"  # also the warm-up
    times: dict[str, list[float]] = {"one after another": [], "answer each": []}
    for _ in range(args.repeats):
        for name, run in (("one after another", one_after_another), ("answer each", together)):
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    engine.close()
    sequential, each = (statistics.median(times[name]) for name in ("one after another", "answer each"))
    print(f"{args.files} files + their sum, {args.new_tokens} new tokens, tiny model on the CPU, median of {args.repeats}")
    print(f"one after another  {sequential:7.3f} s")
    print(f"answer each        {each:7.3f} s")
    print(f"ratio              {sequential / each:7.2f}x")


if __name__ == "__main__":
    main()
