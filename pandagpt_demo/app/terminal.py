"""Terminal chat without Gradio: `python -m pandagpt_demo.chat --image cat.jpg "Describe this"`.

Says first what ImageBind takes in from each file (a sound's three 2 s clips, an image's centre
crop, ...); `--video-sound` hears each video's own sound too, as an input of its own.
Streams the answer, then keeps a multi-turn prompt open (`/undo` drops the last turn, `/labels a, b`
shows ImageBind's view of the files: how alike they are and each one's probabilities over the
labels; `/each` answers the last question again once per file alone and once with their sum,
`/blend 1 2` from a·file1 + (1 − a)·file2 for a = 0, ¼, ½, ¾, 1, each set decoded together; an
empty line or Ctrl-D quits). Same model code and checkpoint flags as `app.py`.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque

from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.app.conversation.each import Row, answer_blend, answer_each
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.app.conversation.view import ImageBindView, imagebind_view
from pandagpt_demo.config import SamplingParams, ServingConfig
from pandagpt_demo.errors import BadSetting, UserError
from pandagpt_demo.model.binding import LabelVectors
from pandagpt_demo.model.intake import took_in
from pandagpt_demo.model.modalities import Modality, has_sound_track
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.compile_cache import use_compile_cache
from pandagpt_demo.serving.engine import Engine
from pandagpt_demo.serving.start import start_engine

from .runtime import add_model_arguments, choose_model, load_with_progress, local_device, setup_logging

EACH_ROWS = 8  # rows /each decodes at once: files and their sum; more wait their turn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pandagpt_demo.chat", description=__doc__.split("\n")[0])
    add_model_arguments(parser)
    for modality in Modality:
        parser.add_argument(
            f"--{modality.value}",
            action="append",
            default=[],
            metavar="FILE",
            help=f"{modality.value} file ({' '.join(modality.extensions)}); repeat for several",
        )
    parser.add_argument(
        "--weight", action="append", default=[], metavar="MODALITY=W", help="multimodal-arithmetic weight of every file of a kind, e.g. audio=0.5"
    )
    parser.add_argument(
        "--video-sound",
        action="store_true",
        help="also hear each video's own sound, as an audio input of its own right after the video (default: a video is seen only, as PandaGPT does)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=SamplingParams.max_new_tokens)
    parser.add_argument("--top-p", type=float, default=SamplingParams.top_p)
    parser.add_argument("--temperature", type=float, default=SamplingParams.temperature)
    parser.add_argument("question", nargs="?", help="first question (asked for when omitted)")
    return parser.parse_args(argv)


def _weights(pairs: list[str]) -> dict[Modality, float]:
    weights = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        weights[Modality(name)] = float(value)
    return weights


def attachments(args: argparse.Namespace) -> list[Attachment]:
    """The files of the command line, in use for the whole chat (several of a kind are summed); with
    `--video-sound`, each video with sound is followed by its sound track."""
    weights = _weights(args.weight)
    files = []
    for modality in Modality:
        for path in getattr(args, modality.value):
            files.append(Attachment.of(path, modality, weight=weights.get(modality, 1.0)))
            if args.video_sound and modality is Modality.VIDEO and has_sound_track(files[-1].path):
                files.append(files[-1].sound_track())
    return files


def intakes(files: list[Attachment]) -> str:
    """What ImageBind takes in from each file, a line each (before the first answer); a file its
    loader refuses is left to the answer, which says why and goes on."""
    lines = []
    for attachment in files:
        try:
            lines.append(f"[{attachment.name}: {took_in(attachment.kind, attachment.path).summary}]")
        except UserError:
            continue
    return "\n".join(lines)


def answer(session: ChatSession, model: PandaGPT, engine: Engine, question: str, params: SamplingParams) -> None:
    """Print the streamed answer; a bad file or an over-long question is reported, not fatal."""
    notify = lambda message: print(f"[{message}]", file=sys.stderr)  # noqa: E731
    shown = ""
    try:
        for so_far in session.ask(model, engine, question, params, notify):
            print(so_far[len(shown) :], end="", flush=True)
            shown = so_far
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
    print()


def table(title: str, rows: list[str], columns: list[str], values: list[list[float]]) -> str:
    """A plain-text table of `values` (rows x columns), three decimals, columns as wide as their names."""
    first = max(len(title), *map(len, rows))
    widths = [max(len(name), 5) for name in columns]
    lines = ["  ".join([title.ljust(first), *(name.rjust(w) for name, w in zip(columns, widths))])]
    for name, row in zip(rows, values):
        lines.append("  ".join([name.ljust(first), *(f"{value:.3f}".rjust(w) for value, w in zip(row, widths))]))
    return "\n".join(lines)


def show_view(view: ImageBindView) -> str:
    """ImageBind's view as the terminal prints it: the similarity table, then the labels' one."""
    text = table("cosine similarity", view.files, view.files, view.similarity)
    if view.labels:
        text += "\n\n" + table("P(label)", view.files, view.labels, view.probabilities)
    return text


def rows_for(command: str, session: ChatSession, model: PandaGPT, engine: Engine, max_new_tokens: int) -> list[Row]:
    """`/each`, or `/blend [A B]` (files by their number in use, default 1 2): the finished rows."""
    if command == "/each":
        return deque(answer_each(session, model, engine, max_new_tokens), maxlen=1)[0]
    numbers = command.split()[1:] or ["1", "2"]
    if len(numbers) != 2 or not all(n.isdigit() for n in numbers):
        raise BadSetting("Use /blend A B with the two files' numbers in use, e.g. /blend 1 2.")
    pair = (int(numbers[0]) - 1, int(numbers[1]) - 1)
    return deque(answer_blend(session, model, engine, max_new_tokens, pair), maxlen=1)[0]


def show_rows(rows: list[Row]) -> str:
    return "\n".join(f"[{row.label}] {row.error or row.text.strip()}" for row in rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    use_compile_cache(args.compile_cache)
    args.device = local_device(args.device)
    choice = choose_model(args)
    print(choice.banner.replace("**", ""), file=sys.stderr)
    model = load_with_progress(choice)
    # The app's decode path (on CUDA, a lone answer in the compiled static slot); one local user, so
    # no time limits; a batch as wide as /each needs (every file and the sum, decoded together).
    engine = start_engine(model, ServingConfig(max_batch=EACH_ROWS, max_waiting=EACH_ROWS, stall_timeout=None, answer_timeout=None))
    try:
        session = ChatSession(in_use=attachments(args))
    except UserError as error:
        sys.exit(f"error: {error}")
    if told := intakes(session.in_use):
        print(told, file=sys.stderr)
    params = SamplingParams(args.max_new_tokens, args.top_p, args.temperature)
    label_cache = LabelVectors()
    question = args.question
    while True:
        if question is None:
            try:
                question = input("\nyou> ").strip()
            except EOFError:
                question = ""
            if not question:
                return
            if question == "/undo":
                session.undo()
                question = None
                continue
            if question == "/each" or question.split(maxsplit=1)[0] == "/blend":
                try:
                    print(show_rows(rows_for(question, session, model, engine, params.max_new_tokens)))
                except UserError as error:
                    print(f"error: {error}", file=sys.stderr)
                question = None
                continue
            if question.split(maxsplit=1)[0] == "/labels":
                try:
                    print(show_view(imagebind_view(model, session, question.removeprefix("/labels"), label_cache)))
                except UserError as error:
                    print(f"error: {error}", file=sys.stderr)
                question = None
                continue
        print("panda> ", end="", flush=True)
        answer(session, model, engine, question, params)
        question = None


if __name__ == "__main__":
    main()
