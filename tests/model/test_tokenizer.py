"""A Vicuna v0 folder as released: only `tokenizer.model` (SentencePiece) and the old class name.

The original tokenized with SentencePiece through `LlamaTokenizer(use_fast=False)`; our loader must
give the same ids for every prompt piece, although transformers no longer knows `LLaMATokenizer`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pandagpt_demo.config import ModelConfig
from pandagpt_demo.model.checkpoints import load_tokenizer
from pandagpt_demo.model.conversation import Conversation

spm = pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def vicuna_v0_tokenizer_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SentencePiece model trained with LLaMA's settings, in a v0-style folder."""
    folder = tmp_path_factory.mktemp("vicuna_v0")
    corpus = folder / "corpus.txt"
    corpus.write_text(
        "\n".join(
            ["### Human: <Img> What is in the image?", "### Assistant: A red square on a table.", "Hello world, is the weather nice today?"] * 40
        )
    )
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=340,
        model_type="bpe",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        minloglevel=2,
    )
    (folder / "tokenizer.vocab").unlink()
    corpus.unlink()
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "LLaMATokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    )
    return folder


def test_prompt_pieces_tokenize_as_sentencepiece(vicuna_v0_tokenizer_folder: Path) -> None:
    tokenizer = load_tokenizer(vicuna_v0_tokenizer_folder)
    reference = spm.SentencePieceProcessor(model_file=str(vicuna_v0_tokenizer_folder / "tokenizer.model"))
    conversation = Conversation()
    conversation.ask("What is in the image?")
    conversation.answer("A red square.")
    conversation.ask("Why is the weather nice?")
    parts = conversation.prompt_parts(with_vector=True)
    text_only = conversation.prompt_parts(with_vector=False)
    for text in (parts.before, parts.after, text_only.after, "A red square.\n###"):
        assert tokenizer(text, add_special_tokens=False).input_ids == reference.encode(text), text
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"


def _renamed_copy(source: Path, folder: Path, renames: dict[str, str]) -> Path:
    """A copy of `source`'s tokenizer files with pieces renamed everywhere (vocabulary, added tokens, templates)."""
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        quoted = {json.dumps(old): json.dumps(new) for old, new in renames.items()}
        text = re.sub("|".join(map(re.escape, quoted)), lambda match: quoted[match.group(0)], (source / name).read_text(encoding="utf-8"))
        (folder / name).write_text(text, encoding="utf-8")  # one pass: a swap stays a swap
    return folder


def test_the_real_tokenizer_has_the_control_pieces_at_0_1_2(tiny_config: ModelConfig) -> None:
    tokenizer = load_tokenizer(tiny_config.files.vicuna_dir)
    assert [tokenizer.convert_tokens_to_ids(piece) for piece in ("<unk>", "<s>", "</s>")] == [0, 1, 2]
    assert len(tokenizer) == 32000  # naming the special tokens added nothing


def test_a_vocabulary_without_a_control_piece_is_refused_not_grown(tiny_config: ModelConfig, tmp_path: Path) -> None:
    """Naming <s> explicitly would add it as token 32000; the loader must refuse instead."""
    folder = _renamed_copy(tiny_config.files.vicuna_dir, tmp_path / "no_bos", {"<s>": "<S>"})
    with pytest.raises(ValueError) as caught:
        load_tokenizer(folder)
    message = str(caught.value)
    assert str(folder) in message and "bos '<s>' is not in its vocabulary of 32000 pieces" in message


def test_control_pieces_at_other_ids_are_refused(tiny_config: ModelConfig, tmp_path: Path) -> None:
    folder = _renamed_copy(tiny_config.files.vicuna_dir, tmp_path / "swapped", {"<s>": "</s>", "</s>": "<s>"})
    with pytest.raises(ValueError) as caught:
        load_tokenizer(folder)
    message = str(caught.value)
    assert str(folder) in message
    assert "bos '<s>' has id 2, LLaMA's has 1" in message and "eos '</s>' has id 1, LLaMA's has 2" in message


def test_a_folder_without_tokenizer_files_is_refused(tiny_config: ModelConfig, tmp_path: Path) -> None:
    """transformers would build a vocabulary of just the named special tokens."""
    folder = tmp_path / "no_tokenizer"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text((tiny_config.files.vicuna_dir / "tokenizer_config.json").read_text())
    with pytest.raises(FileNotFoundError) as caught:
        load_tokenizer(folder)
    assert str(folder) in str(caught.value) and "tokenizer.model" in str(caught.value) and "tokenizer.json" in str(caught.value)
