"""What a browser or an API client sends, checked before anything uses it: only uploaded files,
numbers within their ranges, well-formed history. Each refusal names the setting or file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gradio import processing_utils
from gradio import utils as gradio_utils
from gradio.data_classes import FileData
from gradio_client import utils as client_utils

from pandagpt_demo.config import EXAMPLES_FILE, SamplingParams
from pandagpt_demo.errors import BadInput, BadSetting, first_line
from pandagpt_demo.model.modalities import MediaError, Modality

from .chatlog import Attachment


@dataclass(frozen=True)
class UISettings:
    """Defaults of the sampling sliders (those of the original demo) and the largest values the
    sliders offer; API callers are held to the same ranges."""

    max_new_tokens: int = SamplingParams.max_new_tokens
    top_p: float = SamplingParams.top_p
    temperature: float = SamplingParams.temperature
    max_new_tokens_limit: int = 1024
    temperature_limit: float = 2.0
    weight_limit: float = 2.0
    max_files: int = 16  # files one chat may attach (all are held on disk while it lives)

    def params(self, max_new_tokens: object, top_p: object, temperature: object) -> SamplingParams:
        tokens = number("max_new_tokens", max_new_tokens, 1, self.max_new_tokens_limit)
        if tokens != int(tokens):
            raise BadSetting(f"max_new_tokens must be a whole number, not {max_new_tokens!r}.")
        return SamplingParams(
            max_new_tokens=int(tokens),
            top_p=number("top_p", top_p, 0, 1),
            temperature=number("temperature", temperature, 0, self.temperature_limit),
        )

    def weight(self, name: str, value: object) -> float:
        return number(f"The weight of {name}", value, -self.weight_limit, self.weight_limit)


def number(name: str, value: object, low: float, high: float) -> float:
    """`value` as a float within [low, high], or a BadSetting that says which setting is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadSetting(f"{name} must be a number from {low:g} to {high:g}, not {value!r}.")
    return float(value)


def _upload_roots() -> list[Path]:
    """Where a file handed to a handler may live: Gradio's upload folder and the examples."""
    return [Path(gradio_utils.get_upload_folder()).resolve(), EXAMPLES_FILE.parent.resolve()]


def uploaded_path(modality: Modality, value: str | dict | FileData | None) -> str | None:
    """A component's or an API client's file value as a local path, only if it was uploaded.

    A plain string reaches `/chat` unchecked by Gradio, so without this anyone could have the
    server read (and describe) any file it can open. A URL or a data URL (what an MCP agent gives)
    is fetched as Gradio fetches files for its own components: public hosts only.
    """
    if value is None:
        return None
    if isinstance(value, FileData):
        path = value.path
    elif isinstance(value, dict) and isinstance(value.get("path"), str):
        path = value["path"]
    elif isinstance(value, str):
        path = value
    else:
        raise BadInput(f"The {modality.value} input must be a file (gradio_client.handle_file(...)), not {type(value).__name__}.")
    if path.startswith(("http://", "https://", "data:")):  # what an MCP agent gives: a URL, or the file as a data URL
        path = _fetched(modality, path)
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(root) for root in _upload_roots()):
        raise MediaError(modality, path, "it is a path on the server, not an uploaded file; send the file itself (gradio_client.handle_file)")
    if not resolved.exists():
        raise MediaError(modality, path, "it is no longer on the server (uploads nobody is using are deleted after a while); please attach it again")
    return path


def _fetched(modality: Modality, url: str) -> str:
    """A URL's file in the upload folder, as Gradio fetches files for its own components (public hosts only)."""
    folder = gradio_utils.get_upload_folder()
    try:
        if url.startswith("data:"):
            return processing_utils.save_base64_to_cache(url, folder, f"{modality.value}.{client_utils.get_extension(url) or 'bin'}")
        return processing_utils.ssrf_protected_download(url, folder)
    except Exception as error:  # noqa: BLE001 - whatever went wrong, the URL is the user's to fix
        shown = url if not url.startswith("data:") else "the data URL"
        raise MediaError(
            modality, f"{modality.value} URL", f"{shown} could not be read ({first_line(error)}); give a public http(s) URL or the file itself"
        ) from error


def original_name(value: object, path: str) -> str:
    """The name the client gave the file (Gradio keeps it as the upload's base name)."""
    name = value.orig_name if isinstance(value, FileData) else value.get("orig_name") if isinstance(value, dict) else None
    return name or Path(path).name


def api_attachments(files: dict[Modality, object], weights: object, settings: UISettings) -> list[Attachment]:
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
            path = uploaded_path(modality, value)
            label = f"{modality.value} file {index + 1}" if len(values) > 1 else f"the {modality.value} file"
            result.append(Attachment.of(path, modality, original_name(value, path), settings.weight(label, w)))
    return result


def api_history(history: object) -> list[tuple[str, str]]:
    """`/chat`'s history: earlier [question, answer] pairs of strings."""
    pairs = history or []
    if not isinstance(pairs, list) or not all(
        isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(text, str) for text in pair) for pair in pairs
    ):
        raise BadSetting("history must be a list of [question, answer] pairs of strings.")
    return [(question, answer) for question, answer in pairs]
