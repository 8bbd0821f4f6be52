"""PandaGPT: ImageBind embeddings, projected into Vicuna and summed, conditioning a LoRA-tuned LLM.

The sequence the LLM sees is `<s>` + embed("### Human: <Img>") + [summed vector] +
embed("</Img> " + dialogue + "\\n### Assistant:"), each text part tokenized without special tokens,
exactly as the released weights were trained (docs/model.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from pandagpt_demo.config import ModelConfig, RunSettings, SamplingParams
from pandagpt_demo.errors import BadInput

from . import binding, checkpoints
from .context import ContextFit, fit_context, longest_piece
from .conversation import Conversation
from .encoder import ImageBindEncoder
from .generation import TokenSource, stream_text
from .memory import fits_on_gpu
from .modalities import MediaError, Modality, load_modality

log = logging.getLogger(__name__)


def resolve_dtype(name: str, device: str, quantized: bool = False) -> torch.dtype:
    """`auto` is float16 on CUDA (what the original ran); on the CPU bfloat16 beside quantized weights
    (the dtype the packed kernels run in), float32 otherwise."""
    if name == "auto":
        if device.startswith("cuda"):
            return torch.float16
        return torch.bfloat16 if quantized else torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}; use auto, float32, float16 or bfloat16")
    return dtype


def run_dtype(run: RunSettings) -> torch.dtype:
    """The dtype a model with these run settings computes in (`resolve_dtype` of its own settings)."""
    return resolve_dtype(run.dtype, run.device, run.quantize is not None)


class PandaGPT:
    """The whole model; stateless between requests (conversations and caches belong to callers)."""

    def __init__(
        self,
        config: ModelConfig,
        encoder: ImageBindEncoder,
        llama_proj: nn.Linear,
        llm: nn.Module,
        tokenizer,
    ) -> None:
        self.config = config
        self.encoder = encoder
        self.llama_proj = llama_proj
        self.llm = llm
        self.tokenizer = tokenizer
        self.device = torch.device(config.run.device)
        self.dtype = run_dtype(config.run)
        self.chars_per_token = longest_piece(tokenizer.get_vocab())

    @classmethod
    def load(
        cls,
        config: ModelConfig,
        progress: Callable[[str], None] = lambda step: None,
        detail: Callable[[str], None] = lambda message: None,
    ) -> PandaGPT:
        """Load the three released files; `progress` hears each step as it starts, `detail` the
        progress within a long one (quantizing).

        Every weight is read straight to the run device in its dtype and the LoRA is merged there,
        so host memory holds at most the model itself (on the CPU) and one tensor in transit.
        """
        run = config.run
        dtype = run_dtype(run)
        device = run.device
        progress(f"ImageBind from {config.files.imagebind_path} to {device} as {dtype}")
        encoder = checkpoints.load_imagebind(config, dtype)
        tower = checkpoints.DEFERRED_TOWER
        when = "read when labels are first asked for" if not encoder.loaded(tower) else f"on {device}"
        log.info("ImageBind's %s tower (zero-shot labels): %.1f MB, %s", tower, encoder.tower_bytes(tower) / 1e6, when)
        progress(f"PandaGPT delta from {config.files.delta_path}")
        delta = checkpoints.read_delta(config)
        bits = f", linear layers in {run.quantize}" if run.quantize else ""
        progress(f"Vicuna from {config.files.vicuna_dir} to {device} as {dtype}{bits}")
        if run.quantized_on_cpu:  # the LoRA is merged into each weight before it is rounded
            llm, tokenizer = checkpoints.load_vicuna(config, dtype, lora=delta.lora, detail=detail)
            progress("LoRA (merged before quantizing)")
        else:
            llm, tokenizer = checkpoints.load_vicuna(config, dtype)
            progress("LoRA")
            llm = checkpoints.wrap_lora(llm, config.spec.lora)
            checkpoints.load_lora(llm, delta.lora, config.files.delta_path)
            # bitsandbytes' weights are already on their device, and merging would re-round them: the LoRA stays beside.
            if run.quantize is None and run.merge_lora:
                llm = llm.merge_and_unload()  # one matmul per projection instead of three
        proj = checkpoints.load_llama_proj(delta, config.spec.imagebind.out_embed_dim, llm.config.hidden_size, config.files.delta_path)
        if run.quantize is None or run.quantized_on_cpu:
            # The weights are in place already; this moves and casts the buffers the model computes
            # itself (the rotary frequencies, made on the CPU in float32), as the original's .half() did.
            # Integer codes are left as they are.
            llm = llm.to(device, dtype)
        model = cls(config, encoder, proj.to(device, dtype), llm, tokenizer)
        progress("ready")
        return model

    # --- multimodal inputs -------------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, modality: Modality, data: torch.Tensor) -> torch.Tensor:
        """One preprocessed input -> ImageBind: its (1024,) vector, what answers and ImageBind's view start from."""
        return self.encoder(modality.encoder_key, data.unsqueeze(0))[0]

    @torch.inference_mode()
    def project(self, vector: torch.Tensor) -> torch.Tensor:
        """One ImageBind vector -> llama_proj: a (hidden,) vector in Vicuna's embedding space."""
        return self.llama_proj(vector.to(self.device, self.dtype).unsqueeze(0))[0]

    def project_each(self, vectors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each vector projected alone (a model whose llama_proj is elsewhere does them in one call)."""
        return [self.project(vector) for vector in vectors]

    def embed_labels(self, labels: Sequence[str]) -> torch.Tensor:
        """Labels -> ImageBind's text tower: (len(labels), 1024), for zero-shot labels (binding.py)."""
        return binding.label_vectors(self.encoder, labels)

    def imagebind_outputs(self, inputs: Sequence[tuple[Modality, torch.Tensor]]) -> torch.Tensor:
        """ImageBind's own output of each (kind, vector), as its example reads them (binding.py)."""
        return torch.stack([binding.imagebind_output(self.encoder, modality, vector) for modality, vector in inputs])

    def embed_file(self, modality: Modality, path: str | Path) -> torch.Tensor:
        """A file's ImageBind vector; one whose projection is not finite (the model overflows on it) is
        refused by the file's name, before any prompt is built from it."""
        data = load_modality(modality, path)
        with fits_on_gpu(f"your {modality.value} file"):
            vector = self.encode(modality, data)
            projected = self.project(vector)
        if not torch.isfinite(projected).all():
            log.warning("non-finite %s embedding of %s", modality.value, path)
            raise MediaError(modality, path, f"its embedding is not finite (the model overflows on it in {self.dtype}); try another file")
        return vector

    def fuse(self, vectors: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor | None:
        """Multimodal arithmetic: the weighted sum of the files' projected vectors (weights default 1),
        any number of each modality (the original's answer to several images: sum their projected
        embeddings, each projected alone as the original did), checked finite before any prompt is built."""
        if not vectors:
            return None
        weights = [1.0] * len(vectors) if weights is None else list(weights)
        if len(weights) != len(vectors):
            raise ValueError(f"{len(vectors)} vectors but {len(weights)} weights")
        fused = sum(projected * weight for projected, weight in zip(self.project_each(vectors), weights))
        if not torch.isfinite(fused).all():
            raise BadInput(f"The weighted sum of the {len(vectors)} embedding(s) is not finite; lower the weights.")
        return fused

    # --- prompt -------------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids if text else []

    def prompt_ids(self, conversation: Conversation, with_vector: bool) -> tuple[list[int], list[int]]:
        """Token ids before and after the vector; `before` starts with BOS."""
        parts = conversation.prompt_parts(with_vector)
        return [self.tokenizer.bos_token_id, *self._ids(parts.before)], self._ids(parts.after)

    @torch.inference_mode()
    def prompt_embeds(self, conversation: Conversation, vector: torch.Tensor | None) -> torch.Tensor:
        """The (1, L, hidden) input embeddings of the whole prompt."""
        before, after = self.prompt_ids(conversation, vector is not None)
        embed = self.llm.get_input_embeddings()
        ids = lambda values: torch.tensor(values, dtype=torch.long, device=self.device)  # noqa: E731
        pieces = [embed(ids(before))]
        if vector is not None:
            pieces.append(vector.to(self.dtype).view(1, -1))
        pieces.append(embed(ids(after)))
        return torch.cat(pieces).unsqueeze(0)

    def fit(self, conversation: Conversation, with_vector: bool, max_new_tokens: int) -> ContextFit:
        """Drop the oldest turns (and, last, shorten the answer) until prompt + answer fit the context;
        the work is bounded by the context, not by the history (context.py)."""

        def count(kept: Conversation) -> int:
            before, after = self.prompt_ids(kept, with_vector)
            return len(before) + len(after) + int(with_vector)

        return fit_context(conversation, with_vector, max_new_tokens, self.config.spec.context_length, count, self.chars_per_token)

    # --- generation ---------------------------------------------------------------------------

    def stream(
        self,
        conversation: Conversation,
        vector: torch.Tensor | None,
        params: SamplingParams,
        engine: TokenSource,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Stream the answer to the conversation's open question, piece by piece, decoded by `engine`.

        The caller fits the conversation first (`fit`) and records the joined pieces as the answer.
        """
        tokens = engine.generate(self.prompt_embeds(conversation, vector), params, cancel)
        yield from stream_text(self.tokenizer, tokens, self.config.spec.prompt.stop_text)
