"""ImageBind's view (binding.py) against ImageBind itself: its package's model, loaders and example.

The reference is a fresh `ImageBindModel` given the tiny checkpoint's weights, run by its own
`forward` (its own postprocessing: audio times 20, text times its learned scale) on inputs made by
its own loaders (`load_and_transform_vision_data`, `load_and_transform_text`); audio goes in as
this app's loader makes it (ImageBind's audio loader needs torchcodec, which is not installed;
tests/model/test_modalities.py holds that loader to ImageBind's preprocessing).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pandagpt_demo.config import ImageBindArch, ModelConfig
from pandagpt_demo.errors import BadInput
from pandagpt_demo.model.binding import LabelVectors, label_probabilities, label_tokens, label_vectors, parse_labels, similarity
from pandagpt_demo.model.encoder import imagebind_model_class
from pandagpt_demo.model.modalities import Modality, load_modality
from pandagpt_demo.model.pandagpt import PandaGPT
from tests.conftest import REPO_ROOT

IMAGE = REPO_ROOT / "examples" / "sunset.jpg"
AUDIO = REPO_ROOT / "examples" / "dog_bark.wav"
LABELS = ["a sunset over the sea", "a dog barking", "rain on a roof"]


@pytest.fixture(scope="module")
def reference(tiny_config: ModelConfig) -> torch.nn.Module:
    model = imagebind_model_class()(**ImageBindArch.tiny().kwargs())
    model.load_state_dict(torch.load(tiny_config.files.imagebind_path, map_location="cpu"))
    return model.eval()


def ours(model: PandaGPT, modality: Modality, path: Path) -> torch.Tensor:
    """The 1024-d vector PandaGPT's answers start from (before llama_proj)."""
    return model.encoder(modality.encoder_key, load_modality(modality, path).unsqueeze(0))[0]


@torch.inference_mode()
def test_similarity_and_label_probabilities_are_imagebinds(tiny_model: PandaGPT, reference: torch.nn.Module) -> None:
    from imagebind import data

    theirs = reference(
        {
            "vision": data.load_and_transform_vision_data([str(IMAGE)], "cpu"),
            "audio": load_modality(Modality.AUDIO, AUDIO).unsqueeze(0),
            "text": data.load_and_transform_text(LABELS, "cpu"),
        }
    )
    image, audio = ours(tiny_model, Modality.IMAGE, IMAGE), ours(tiny_model, Modality.AUDIO, AUDIO)

    expected_cosine = torch.nn.functional.cosine_similarity(theirs["vision"], theirs["audio"])[0]
    matrix = similarity(torch.stack([image, audio]))
    torch.testing.assert_close(matrix[0, 1], expected_cosine, atol=1e-5, rtol=0)
    torch.testing.assert_close(matrix.diagonal(), torch.ones(2), atol=1e-5, rtol=0)

    labels = label_vectors(tiny_model.encoder, LABELS)
    torch.testing.assert_close(labels, theirs["text"], atol=1e-5, rtol=1e-5)
    probabilities = label_probabilities(tiny_model.encoder, [(Modality.IMAGE, image), (Modality.AUDIO, audio)], labels)
    expected = torch.cat([torch.softmax(theirs["vision"] @ theirs["text"].T, dim=-1), torch.softmax(theirs["audio"] @ theirs["text"].T, dim=-1)])
    torch.testing.assert_close(probabilities, expected, atol=1e-5, rtol=0)
    # the audio scale matters: without it (PandaGPT's vector as it is) the probabilities differ
    unscaled = torch.softmax(audio @ theirs["text"].T, dim=-1)
    assert not torch.allclose(unscaled, expected[1], atol=1e-5)


def test_labels_are_tokenized_as_imagebinds_text_loader_does() -> None:
    from imagebind import data

    torch.testing.assert_close(label_tokens(LABELS), data.load_and_transform_text(LABELS, "cpu"))


def test_labels_as_typed_and_those_refused() -> None:
    assert parse_labels(" dog barking, rain,, car engine ,rain ") == ["dog barking", "rain", "car engine"]
    with pytest.raises(BadInput, match="at least one label"):
        label_tokens(parse_labels(" , ,"))
    with pytest.raises(BadInput, match="500 labels is too many"):
        label_tokens([f"label {i}" for i in range(500)])
    long = "a dog " * 40  # 80 tokens: ImageBind's tokenizer would cut it silently
    with pytest.raises(BadInput, match="longer than ImageBind's text tower reads \\(75 tokens\\)"):
        label_tokens(["rain", long])
    assert label_tokens(["a dog " * 37 + "a"]).shape == (1, 77)  # 75 tokens: read whole


def test_the_text_tower_is_read_when_labels_are_first_asked_for(tiny_config: ModelConfig, caplog: pytest.LogCaptureFixture) -> None:
    """On the CPU a chat without labels never holds the text tower; the first labels load it, once."""
    with caplog.at_level("INFO", logger="pandagpt_demo.model"):
        model = PandaGPT.load(tiny_config)
        encoder = model.encoder
        towers = sum(encoder.tower_bytes(key) for key in ("vision", "text", "audio", "depth", "thermal", "imu"))
        everything = sum(t.numel() * t.element_size() for t in (*encoder.parameters(), *encoder.buffers()))
        assert towers == everything  # the six towers are the whole of ImageBind: nothing counted twice or left out
        text = encoder.tower_bytes("text")
        assert text > 0
        assert f"ImageBind's text tower (zero-shot labels): {text / 1e6:.1f} MB, read when labels are first asked for" in caplog.text
        assert not encoder.loaded("text")
        assert all(p.is_meta for p in encoder.model.modality_trunks["text"].parameters())

        vectors = model.embed_labels(LABELS[:2])
        assert encoder.loaded("text") and not any(p.is_meta for p in encoder.parameters())
        assert caplog.text.count("ImageBind's text tower loaded on first use") == 1
        model.embed_labels(LABELS[:2])
        assert caplog.text.count("ImageBind's text tower loaded on first use") == 1
    eager = PandaGPT.load(tiny_config)
    eager.encoder.ensure_loaded("text")
    assert torch.equal(vectors, eager.embed_labels(LABELS[:2]))


@torch.inference_mode()
def test_label_vectors_are_kept_by_text_and_given_back_in_the_order_asked(tiny_model: PandaGPT) -> None:
    cache = LabelVectors(capacity=3)
    first = cache(tiny_model.embed_labels, LABELS[:2], source="tiny")
    assert cache.encodes == 2
    torch.testing.assert_close(first, label_vectors(tiny_model.encoder, LABELS[:2]), atol=1e-6, rtol=0)

    again = cache(tiny_model.embed_labels, [LABELS[1], LABELS[2], LABELS[0]], source="tiny")
    assert cache.encodes == 3, "only the new label went through the text tower"
    torch.testing.assert_close(again, label_vectors(tiny_model.encoder, [LABELS[1], LABELS[2], LABELS[0]]), atol=1e-6, rtol=0)

    cache(tiny_model.embed_labels, ["a car engine"], source="tiny")  # a fourth: the least recently used (LABELS[1]) goes
    cache(tiny_model.embed_labels, [LABELS[2], LABELS[0], "a car engine"], source="tiny")
    assert cache.encodes == 4
    cache(tiny_model.embed_labels, [LABELS[1]], source="tiny")
    assert cache.encodes == 5

    cache(tiny_model.embed_labels, [LABELS[1]], source="another model")
    assert cache.encodes == 6, "another model's labels are made anew"
    with pytest.raises(BadInput, match="at most 64"):
        cache(tiny_model.embed_labels, [f"label {n}" for n in range(65)], source="another model")
    assert cache.encodes == 6


@torch.inference_mode()
def test_label_vectors_made_elsewhere_are_kept_and_used(tiny_model: PandaGPT) -> None:
    """A ZeroGPU call makes the vectors of the labels the cache lacks (`known` says which it has); kept, they are not made again."""
    cache = LabelVectors()
    asked: list[list[str]] = []

    def make(labels: list[str]) -> torch.Tensor:
        asked.append(labels)
        return tiny_model.embed_labels(labels)

    assert cache.known(LABELS, source="tiny") == {}
    cache.keep({LABELS[0]: tiny_model.embed_labels([LABELS[0]])[0]}, source="tiny")
    assert list(cache.known(LABELS, source="tiny")) == [LABELS[0]]
    vectors = cache(make, LABELS, source="tiny")
    assert asked == [LABELS[1:]], "only the labels not kept are made"
    torch.testing.assert_close(vectors, label_vectors(tiny_model.encoder, LABELS), atol=1e-6, rtol=0)


def test_labels_are_tokenized_in_a_process_that_never_loaded_imagebind() -> None:
    """A front end of model replicas tokenizes labels without ever loading ImageBind's model (its
    package imports a torchvision module that moved: encoder.imagebind_module)."""
    code = "from pandagpt_demo.model.binding import label_tokens; print(tuple(label_tokens(['a dog barking']).shape))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(1, 77)"
