"""PandaGPT's multi-turn prompt: a list of turns rendered with a `PromptTemplate`.

The rendering reproduces the original demo exactly: the first question is bare, each finished turn
appends `{question}\\n### Assistant: {answer}\\n###`, later questions are prefixed ` Human: `.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pandagpt_demo.config import PromptTemplate


@dataclass
class Turn:
    question: str
    answer: str | None = None


@dataclass
class PromptParts:
    """The text around the multimodal vector: `before` + [vector] + `after`.

    Without a vector (text-only chat) `before` is empty and `after` holds the whole prompt.
    """

    before: str
    after: str


@dataclass
class Conversation:
    """The turns of one chat; the last turn may still wait for its answer."""

    template: PromptTemplate = field(default_factory=PromptTemplate)
    turns: list[Turn] = field(default_factory=list)

    def ask(self, question: str) -> None:
        if self.waiting:
            raise ValueError("the previous question has no answer yet")
        self.turns.append(Turn(question))

    def answer(self, text: str) -> None:
        if not self.waiting:
            raise ValueError("there is no open question to answer")
        self.turns[-1].answer = text

    def undo(self) -> Turn | None:
        """Remove and return the last turn (answered or not)."""
        return self.turns.pop() if self.turns else None

    def reopen(self) -> None:
        """Forget the last answer so that it can be generated again."""
        if not self.turns or self.waiting:
            raise ValueError("there is no answer to regenerate")
        self.turns[-1].answer = None

    def _turn_text(self, turn: Turn) -> str:
        """A turn as the dialogue writes it, but for the prefix every question after the first has."""
        t = self.template
        return turn.question + (t.assistant_tag + " " + turn.answer + t.turn_separator if turn.answer is not None else "")

    def dialogue(self) -> str:
        """The text between the tags and the final assistant tag, in the original's format."""
        return self.template.later_question_prefix.join(self._turn_text(turn) for turn in self.turns)

    def prompt_chars(self, with_vector: bool) -> list[int]:
        """For each turn, how many characters the prompt's text has when that turn is the oldest
        kept: one pass over the turns, nothing rendered whole (context.py counts with it)."""
        empty = Conversation(self.template).prompt_parts(with_vector)
        around = len(empty.before) + len(empty.after)
        prefix = len(self.template.later_question_prefix)
        chars, later = [], 0  # `later`: the characters of the turns after this one, each with its prefix
        for turn in reversed(self.turns):
            own = len(self._turn_text(turn))
            chars.append(around + own + later)
            later += prefix + own
        return chars[::-1]

    def prompt_parts(self, with_vector: bool) -> PromptParts:
        t = self.template
        tail = self.dialogue() + t.assistant_tag
        if with_vector:
            return PromptParts(before=t.human_prefix + t.image_open, after=t.image_close + tail)
        return PromptParts(before="", after=t.human_prefix + tail)

    def copy(self) -> Conversation:
        return Conversation(self.template, [Turn(t.question, t.answer) for t in self.turns])

    @property
    def waiting(self) -> bool:
        """Whether the last question still has no answer."""
        return bool(self.turns) and self.turns[-1].answer is None

    def drop_oldest(self, count: int = 1) -> list[Turn]:
        """Drop the `count` oldest turns to make room in the context (never the open question)."""
        if count >= len(self.turns):
            raise ValueError(f"{count} of {len(self.turns)} turns cannot be dropped: the current question stays")
        dropped = self.turns[:count]
        del self.turns[:count]
        return dropped
