"""The files a program sends (`/chat`'s arguments, `/v1`'s media saved to the upload folder) as the
chat's attachments, each with its weight, and each video's sound where it is asked for."""

from __future__ import annotations

from pandagpt_demo.app.answering.settings import AnswerSettings
from pandagpt_demo.app.answering.uploaded import original_name, uploaded_path
from pandagpt_demo.app.conversation.chatlog import Attachment
from pandagpt_demo.errors import BadSetting
from pandagpt_demo.model.modalities import Modality, has_sound_track


def api_attachments(files: dict[Modality, object], weights: object, settings: AnswerSettings, video_sound: object = False) -> list[Attachment]:
    """`/chat`'s files (one file or a list of files per modality) with their weights (a number per
    modality, or a list with one number per file). A video is heard too (its sound track right after
    it) with `video_sound` if it has sound, or if its value asks for it (`{"with_sound": true}`, as
    `/v1` sends it: then a video without sound is refused)."""
    if not isinstance(video_sound, bool):
        raise BadSetting(f"video_sound must be true or false, not {video_sound!r}.")
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
            attachment = Attachment.of(path, modality, original_name(value, path), settings.weight(label, w))
            result.append(attachment)
            asked = isinstance(value, dict) and value.get("with_sound") is True
            if asked and modality is not Modality.VIDEO:
                raise BadSetting(f"with_sound is for videos; '{attachment.name}' is taken as {modality.value}.")
            if modality is Modality.VIDEO and (asked or (video_sound is True and has_sound_track(attachment.path))):
                result.append(attachment.sound_track())
    return result
