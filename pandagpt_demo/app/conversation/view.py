"""ImageBind's view of a chat's files in use: how alike they are, and which of the user's labels
each one is, from the very vectors the answers are made of (the session's embedding cache)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pandagpt_demo.errors import BadInput
from pandagpt_demo.model import binding
from pandagpt_demo.model.pandagpt import PandaGPT

from .session import ChatSession, EncodesInItsCall, Model


@dataclass(frozen=True)
class ImageBindView:
    """Plain data for a page, an API or a terminal: one row and column per file in use."""

    files: list[str]  # each file's name and kind, e.g. "dog.wav (audio)"
    similarity: list[list[float]]  # cosine of ImageBind's vectors, files x files
    labels: list[str]  # as parsed from what the user typed; empty if none were asked for
    probabilities: list[list[float]]  # files x labels, each row summing to 1

    def as_dict(self) -> dict:
        return {"files": self.files, "similarity": self.similarity, "labels": self.labels, "probabilities": self.probabilities}


def imagebind_view(model: Model, session: ChatSession, labels: str, label_cache: binding.LabelVectors) -> ImageBindView:
    """The similarity of every pair of files in use and, if `labels` (comma-separated) are given,
    each file's probabilities over them (their vectors kept in `label_cache`). Files not yet encoded
    are encoded once and kept for the next answer; on ZeroGPU all of it is one GPU call. Raises
    BadInput (no files, bad labels) before any work."""
    if not session.in_use:
        raise BadInput("No files are in use: attach a file first, then look at ImageBind's view of it.")
    parsed = binding.parse_labels(labels)
    if labels.strip() and not parsed:
        raise BadInput("The labels are empty: type labels separated by commas, e.g. 'dog barking, rain, car engine'.")
    if parsed:
        binding.label_tokens(parsed)  # too many, or too long: refused before any file is encoded
    if isinstance(model, EncodesInItsCall):
        vectors, outputs, label_vectors = model.look(session.cache, session.files_in_use(), parsed, label_cache)
    else:
        vectors, outputs, label_vectors = _look_here(model, session, parsed, label_cache)
    names = [f"{attachment.name} ({attachment.kind.value})" for attachment in session.in_use]
    similarity = binding.similarity(torch.stack(vectors)).tolist()
    probabilities = binding.zero_shot(outputs, label_vectors).tolist() if parsed else []
    return ImageBindView(names, similarity, parsed, probabilities)


def _look_here(
    model: PandaGPT, session: ChatSession, labels: list[str], label_cache: binding.LabelVectors
) -> tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
    """The files' vectors and, with labels, ImageBind's outputs of the files and the labels' vectors
    (from this process's ImageBind, or the replicas' for a model served by them)."""
    in_use = session.vectors_in_use(model)
    vectors = [vector for _, vector in in_use]
    if not labels:
        return vectors, None, None
    outputs = model.imagebind_outputs([(attachment.kind, vector) for attachment, vector in in_use])
    return vectors, outputs, label_cache(model.embed_labels, labels, source=model.config)
