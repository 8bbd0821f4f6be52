"""`--embeddings vectors.npy`: each file's ImageBind vector, once per content and kind, for the
user's own retrieval or clustering — a NumPy array (files × 1024, float32) and beside it a JSONL
index, row by row: the file's name, kind, sha256 and the custom_ids that used it; with labels, its
zero-shot probabilities over them, as ImageBind's view computes them. The vectors are those the
answers were made from (each session's cache): nothing is encoded twice."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import torch

from pandagpt_demo.model import binding
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT

from .runner import Answered


class VectorTable:
    """The vectors of the files a run's answers used, in the order they were first answered."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, Modality], dict] = {}
        self.vectors: list[torch.Tensor] = []
        self._lock = threading.Lock()

    def add(self, answer: Answered) -> None:
        """Keep the vectors of an answer's files (a refused request has none)."""
        if not answer.ok or answer.session is None:
            return
        with self._lock:
            for attachment in answer.attached:
                key = (attachment.sha256, attachment.kind)
                vector = answer.session.cache.get((attachment.kind, attachment.sha256))
                if vector is None:
                    continue
                if key not in self.rows:
                    self.rows[key] = {
                        "row": len(self.vectors),
                        "name": attachment.name,
                        "kind": attachment.kind.value,
                        "sha256": attachment.sha256,
                        "custom_ids": [],
                    }
                    self.vectors.append(vector.detach().float().cpu())
                self.rows[key]["custom_ids"].append(answer.line["custom_id"])

    def write(self, path: Path, model: PandaGPT, labels: list[str]) -> Path:
        """The array at `path` and its index beside it (`<path>.jsonl`); the index's path."""
        array = torch.stack(self.vectors).numpy() if self.vectors else np.zeros((0, 0), dtype=np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, array.astype(np.float32))
        rows = list(self.rows.values())
        if labels and rows:
            with torch.inference_mode():
                texts = binding.label_vectors(model.encoder, labels)
                inputs = [(Modality(row["kind"]), self.vectors[row["row"]]) for row in rows]
                probabilities = binding.label_probabilities(model.encoder, inputs, texts).tolist()
            for row, p in zip(rows, probabilities):
                row["probabilities"] = dict(zip(labels, p))
        index = path.with_suffix(".jsonl")
        index.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        return index
