"""ImageBind's own view of the inputs: how alike they are, and which of a user's labels each one is.

PandaGPT answers from ImageBind's 1024-d vectors; this module shows those same vectors to the user.
- `similarity`: the cosine of every pair of vectors (cosine ignores the per-modality logit scales).
- `label_probabilities`: zero-shot labels as ImageBind's own example computes them: each label
  tokenized by ImageBind's text loader (`SimpleTokenizer`, 77 tokens with its start and end) and
  embedded by the text tower, then a softmax over the labels of `input @ labels.T`, where the input
  is ImageBind's own output. PandaGPT's audio vector skips ImageBind's ×20 audio scale
  (encoder.py); here it is put back, so the probabilities equal ImageBind's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import cache

import torch

from pandagpt_demo.errors import BadInput

from .encoder import ImageBindEncoder, imagebind_module
from .modalities import Modality

TEXT = "text"  # ImageBind's modality key of its text tower
MAX_LABELS = 64  # labels one request may ask about: each is a pass of the text tower


@cache
def _tokenizer():  # noqa: ANN202 - ImageBind's SimpleTokenizer, imported only when labels are asked for
    from importlib.resources import files

    simple_tokenizer = imagebind_module("imagebind.models.multimodal_preprocessors").SimpleTokenizer
    return simple_tokenizer(bpe_path=str(files("imagebind") / "bpe" / "bpe_simple_vocab_16e6.txt.gz"))


def parse_labels(text: str) -> list[str]:
    """Comma-separated labels as a user types them: trimmed, empty ones and repeats dropped, order kept."""
    labels = [label.strip() for label in text.split(",")]
    return list(dict.fromkeys(label for label in labels if label))


def label_tokens(labels: Sequence[str]) -> torch.Tensor:
    """(len(labels), 77) token ids, as ImageBind's `load_and_transform_text` makes them; a label the
    tokenizer would cut (it keeps 75 tokens between its start and end) is refused by name."""
    if not labels:
        raise BadInput("Type at least one label (labels are separated by commas).")
    if len(labels) > MAX_LABELS:
        raise BadInput(f"{len(labels)} labels is too many; at most {MAX_LABELS} at once.")
    tokenizer = _tokenizer()
    room = tokenizer.context_length - 2
    for label in labels:
        if len(tokenizer.encode(label)) > room:
            raise BadInput(f"The label {label[:40]!r}… is longer than ImageBind's text tower reads ({room} tokens); shorten it.")
    return torch.stack([tokenizer(label) for label in labels])


def label_vectors(encoder: ImageBindEncoder, labels: Sequence[str]) -> torch.Tensor:
    """ImageBind's text embeddings of `labels`, (len(labels), 1024), with the text tower's own
    postprocessing (normalized, times its learned logit scale)."""
    return encoder(TEXT, label_tokens(labels))


class LabelVectors:
    """`label_vectors` with each label's vector kept by its text, so a label asked about again (by
    any user of the app) costs no pass of the text tower. Bounded: the least recently used go first.
    Vectors of one model are never given for another (`source`, the model's config): the cache empties."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self.encodes = 0  # labels run through the text tower: what the cache saves is visible
        self._vectors: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._source: object = None
        self._lock = threading.Lock()

    def __call__(self, make: Callable[[list[str]], torch.Tensor], labels: Sequence[str], source: object = None) -> torch.Tensor:
        """(len(labels), 1024): the vectors kept, and those of the other labels from `make` (a model's
        `embed_labels`); refused as `label_tokens` refuses, before any work."""
        label_tokens(labels)
        found = self.known(labels, source)
        missing = [label for label in labels if label not in found]
        if missing:
            made = dict(zip(missing, make(missing)))
            self.keep(made, source)
            found.update(made)
        return torch.stack([found[label] for label in labels])

    def known(self, labels: Sequence[str], source: object = None) -> dict[str, torch.Tensor]:
        """The vectors kept of these labels (made by `source`), now the most recently used."""
        with self._lock:
            if source != self._source:
                self._vectors.clear()
                self._source = source
            found = {label: self._vectors[label] for label in labels if label in self._vectors}
            for label in found:
                self._vectors.move_to_end(label)
        return found

    def keep(self, vectors: dict[str, torch.Tensor], source: object = None) -> None:
        """Keep label vectors made by `source` (here, or in a ZeroGPU call)."""
        with self._lock:
            if source != self._source:
                self._vectors.clear()
                self._source = source
            self.encodes += len(vectors)
            for label, vector in vectors.items():
                self._vectors[label] = vector.detach().clone()
                self._vectors.move_to_end(label)
            while len(self._vectors) > self.capacity:
                self._vectors.popitem(last=False)


def imagebind_output(encoder: ImageBindEncoder, modality: Modality, vector: torch.Tensor) -> torch.Tensor:
    """What ImageBind's own forward returns for an input whose PandaGPT vector is `vector`, on the
    encoder's device: the vector may be elsewhere (a front end of model replicas keeps its vectors
    on the CPU), and the audio logit scale it is multiplied by is on the encoder's device."""
    return encoder.full_postprocess(modality.encoder_key, vector.to(encoder.placement.device))


def output_scale(encoder: ImageBindEncoder, modality: Modality) -> float:
    """ImageBind's own output of an input is its PandaGPT vector times this: the audio logit scale
    PandaGPT skips, 1 for every other kind (`full_postprocess` of a one). A number, so a process
    that cannot read the encoder's weights (a ZeroGPU Space's, outside its calls) can apply it."""
    parameter = encoder.placement
    return encoder.full_postprocess(modality.encoder_key, torch.ones((), device=parameter.device, dtype=parameter.dtype)).item()


def similarity(vectors: torch.Tensor) -> torch.Tensor:
    """(n, n) cosine similarity of n ImageBind vectors, (n, 1024), computed in float32."""
    unit = torch.nn.functional.normalize(vectors.float(), dim=-1)
    cosine = unit @ unit.T
    return (cosine + cosine.T) / 2  # exactly symmetric: a matmul's rounding need not be


def label_probabilities(encoder: ImageBindEncoder, inputs: Sequence[tuple[Modality, torch.Tensor]], labels: torch.Tensor) -> torch.Tensor:
    """(len(inputs), n_labels): for each (modality, PandaGPT vector), the softmax over the labels'
    vectors (`label_vectors`) of ImageBind's scaled similarities, as its own example computes them."""
    return zero_shot(torch.stack([imagebind_output(encoder, modality, vector) for modality, vector in inputs]), labels)


def zero_shot(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(inputs, n_labels): the softmax over the labels of ImageBind's outputs times the labels' vectors."""
    return torch.softmax(outputs.float() @ labels.float().T, dim=-1)
