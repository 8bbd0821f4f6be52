"""The files a program sends (`/chat`'s arguments, `/v1`'s media saved to the upload folder) as the
chat's attachments, each with its weight."""

from __future__ import annotations

from pandagpt_demo.app.answering.settings import AnswerSettings
from pandagpt_demo.app.answering.uploaded import original_name, uploaded_path
from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.errors import BadSetting
from pandagpt_demo.model.modalities import Modality


def api_attachments(files: dict[Modality, object], weights: object, settings: AnswerSettings) -> list[Attachment]:
    """`/chat`'s files (one file or a list of files per modality) with their weights (a number per
    modality, or a list with one number per file)."""
    names = {m.value for m in Modality}
    weights = weights or {}
    if not isinstance(weights, dict) or not set(weights) <= names:
        raise BadSetting(f"weights must map modality names ({', '.join(sorted(names))}) to numbers or lists of numbers, not {weights!r}.")
    result: list[Attachment] = []
    for modality, given in files.items():
        values = given if isinstance(given, list) else [] if given is None else [given]
        weight = weights.get(modality.value, 1.0)
        per_file = weight if isinstance(weight, list) else [weight] * len(values)
        if len(per_file) != len(values):
            raise BadSetting(f"weights['{modality.value}'] has {len(per_file)} numbers for {len(values)} {modality.value} file(s).")
        for index, (value, w) in enumerate(zip(values, per_file)):
            path = uploaded_path(modality, value, settings.remote)
            label = f"{modality.value} file {index + 1}" if len(values) > 1 else f"the {modality.value} file"
            result.append(Attachment.of(path, modality, original_name(value, path), settings.weight(label, w)))
    return result
