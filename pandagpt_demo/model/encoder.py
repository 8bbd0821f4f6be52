"""Frozen ImageBind with PandaGPT's postprocessing: one embedding per input, per modality.

The model code comes from the `imagebind-unofficial` package; its own `forward` scales audio
embeddings by 20, which PandaGPT's copy of ImageBind does not (docs/model.md), so this module runs
the towers itself and applies PandaGPT's postprocessing.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType

import torch
from torch import nn

from pandagpt_demo.config import ImageBindArch

log = logging.getLogger(__name__)


def imagebind_module(name: str) -> ModuleType:
    """Import a module of imagebind-unofficial (`imagebind.models.imagebind_model`, ...).

    Importing the package runs `imagebind.data`, which imports pytorchvideo; pytorchvideo still
    imports `torchvision.transforms.functional_tensor`, removed from torchvision in 0.17, whose
    functions now live in `torchvision.transforms.functional`. Every import of it goes through
    here, in any process (a front end of model replicas imports only its tokenizer).
    """
    import torchvision.transforms.functional as tv_functional

    sys.modules.setdefault("torchvision.transforms.functional_tensor", tv_functional)
    return importlib.import_module(name)


@functools.cache
def imagebind_shapes(arch: ImageBindArch) -> dict[str, torch.Size]:
    """Key -> shape of ImageBind's state dict, built without allocating its weights."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):  # parameters on `meta`; ImageBind's __init__ calls .item()
        encoder = ImageBindEncoder(arch)
    return {key: value.shape for key, value in encoder.model.state_dict().items()}


def imagebind_model_class() -> type[nn.Module]:
    return imagebind_module("imagebind.models.imagebind_model").ImageBindModel


class ImageBindEncoder(nn.Module):
    """ImageBind's towers, frozen, returning PandaGPT's postprocessed embeddings.

    A tower may be left unloaded (`defer`) until its first use: the text tower (1.4 GB in float32)
    is needed only for zero-shot labels, which most chats never ask for.
    """

    def __init__(self, arch: ImageBindArch) -> None:
        super().__init__()
        self.arch = arch
        self.model = imagebind_model_class()(**arch.kwargs())
        self.model.eval().requires_grad_(False)
        self._deferred: dict[str, Callable[[], dict[str, torch.Tensor]]] = {}
        self._loading = threading.Lock()

    def _parts(self) -> tuple[nn.ModuleDict, ...]:
        model = self.model
        return (model.modality_preprocessors, model.modality_trunks, model.modality_heads, model.modality_postprocessors)

    def _postprocess(self, modality_key: str, x: torch.Tensor) -> torch.Tensor:
        postprocessor = self.model.modality_postprocessors[modality_key]
        if modality_key == "audio":
            return postprocessor[0](x)  # L2-normalize only: PandaGPT skips the x20 logit scale
        return postprocessor(x)

    @staticmethod
    def tower_of(key: str) -> str:
        """The modality a state-dict key belongs to (`modality_trunks.text.…` -> `text`)."""
        return key.split(".")[1]

    def tower_bytes(self, modality_key: str) -> int:
        """Memory held by one modality's preprocessor, trunk, head and postprocessor (parameters and buffers), loaded or not."""
        tensors = [t for part in self._parts() for t in (*part[modality_key].parameters(), *part[modality_key].buffers())]
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def placement(self) -> torch.Tensor:
        """A parameter of the vision tower (always loaded): the device and dtype every tower runs in."""
        return next(self.model.modality_trunks["vision"].parameters())

    def place(self, device: torch.device | str, dtype: torch.dtype) -> ImageBindEncoder:
        """Move and cast every loaded tower; a deferred one is only given the dtype (its memory counted as it
        will be), and is moved when it loads."""
        for part in self._parts():
            for key, module in part.items():
                module.to(dtype=dtype) if key in self._deferred else module.to(device, dtype)
        return self

    def defer(self, modality_key: str, read: Callable[[], dict[str, torch.Tensor]]) -> None:
        """Leave a tower's weights unloaded; `read` gives its state-dict entries when it is first used."""
        self._deferred[modality_key] = read

    def loaded(self, modality_key: str) -> bool:
        return modality_key not in self._deferred

    def ensure_loaded(self, modality_key: str) -> None:
        if modality_key not in self._deferred:
            return
        with self._loading:  # two first requests at once load it once
            read = self._deferred.get(modality_key)
            if read is None:
                return
            anchor = self.placement
            self.model.load_state_dict(read(), strict=False, assign=True)
            del self._deferred[modality_key]
            for part in self._parts():
                part[modality_key].to(anchor.device, anchor.dtype)
            log.info("ImageBind's %s tower loaded on first use: %.1f MB on %s", modality_key, self.tower_bytes(modality_key) / 1e6, anchor.device)

    @torch.inference_mode()
    def full_postprocess(self, modality_key: str, vector: torch.Tensor) -> torch.Tensor:
        """ImageBind's own output for an input `forward` embedded as `vector`: the audio logit scale
        PandaGPT skips, put back (every other modality's postprocessing is ImageBind's already)."""
        if modality_key == "audio":
            return self.model.modality_postprocessors[modality_key][1](vector)
        return vector

    @torch.inference_mode()
    def forward(self, modality_key: str, batch: torch.Tensor) -> torch.Tensor:
        """Embed a batch of one modality: (B, ...) -> (B, out_embed_dim).

        Clip inputs (audio (B, 3, 1, 128, 204), video (B, 15, 3, 2, 224, 224)) are embedded per
        clip, postprocessed, then averaged, as ImageBind does.
        """
        clips = batch.ndim >= 5
        if clips:
            n_inputs, n_clips = batch.shape[:2]
            batch = batch.reshape(n_inputs * n_clips, *batch.shape[2:])
        self.ensure_loaded(modality_key)
        parameter = self.placement
        batch = batch.to(device=parameter.device, dtype=parameter.dtype if batch.is_floating_point() else batch.dtype)  # text: token ids
        prepared = self.model.modality_preprocessors[modality_key](**{modality_key: batch})
        hidden = self.model.modality_trunks[modality_key](**prepared["trunk"])
        embedding = self.model.modality_heads[modality_key](hidden, **prepared["head"])
        embedding = self._postprocess(modality_key, embedding)
        if clips:
            embedding = embedding.reshape(n_inputs, n_clips, -1).mean(dim=1)
        return embedding
