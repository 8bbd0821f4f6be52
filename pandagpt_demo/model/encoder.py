"""Frozen ImageBind with PandaGPT's postprocessing: one embedding per input, per modality.

The model code comes from the `imagebind-unofficial` package; its own `forward` scales audio
embeddings by 20, which PandaGPT's copy of ImageBind does not (docs/model.md), so this module runs
the towers itself and applies PandaGPT's postprocessing.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import torch
from torch import nn

from pandagpt_demo.config import ImageBindArch


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


def imagebind_model_class() -> type[nn.Module]:
    return imagebind_module("imagebind.models.imagebind_model").ImageBindModel


class ImageBindEncoder(nn.Module):
    """ImageBind's towers, frozen, returning PandaGPT's postprocessed embeddings."""

    def __init__(self, arch: ImageBindArch) -> None:
        super().__init__()
        self.arch = arch
        self.model = imagebind_model_class()(**arch.kwargs())
        self.model.eval().requires_grad_(False)

    def _postprocess(self, modality_key: str, x: torch.Tensor) -> torch.Tensor:
        postprocessor = self.model.modality_postprocessors[modality_key]
        if modality_key == "audio":
            return postprocessor[0](x)  # L2-normalize only: PandaGPT skips the x20 logit scale
        return postprocessor(x)

    def tower_bytes(self, modality_key: str) -> int:
        """Memory held by one modality's preprocessor, trunk, head and postprocessor (parameters and buffers)."""
        parts = (self.model.modality_preprocessors, self.model.modality_trunks, self.model.modality_heads, self.model.modality_postprocessors)
        tensors = [t for part in parts for t in (*part[modality_key].parameters(), *part[modality_key].buffers())]
        return sum(t.numel() * t.element_size() for t in tensors)

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
        parameter = next(self.model.parameters())
        batch = batch.to(device=parameter.device, dtype=parameter.dtype if batch.is_floating_point() else batch.dtype)  # text: token ids
        prepared = self.model.modality_preprocessors[modality_key](**{modality_key: batch})
        hidden = self.model.modality_trunks[modality_key](**prepared["trunk"])
        embedding = self.model.modality_heads[modality_key](hidden, **prepared["head"])
        embedding = self._postprocess(modality_key, embedding)
        if clips:
            embedding = embedding.reshape(n_inputs, n_clips, -1).mean(dim=1)
        return embedding
