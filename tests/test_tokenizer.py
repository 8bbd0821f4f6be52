"""A Vicuna v0 folder as released: only `tokenizer.model` (SentencePiece) and the old class name.

The original tokenized with SentencePiece through `LlamaTokenizer(use_fast=False)`; our loader must
give the same ids for every prompt piece, although transformers no longer knows `LLaMATokenizer`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pandagpt_demo.checkpoints import load_tokenizer
from pandagpt_demo.conversation import Conversation

spm = pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def vicuna_v0_tokenizer_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SentencePiece model trained with LLaMA's settings, in a v0-style folder."""
    folder = tmp_path_factory.mktemp("vicuna_v0")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(["### Human: <Img> What is in the image?", "### Assistant: A red square on a table.", "Hello world, is the weather nice today?"] * 40))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tokenizer"), vocab_size=340, model_type="bpe",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, minloglevel=2,
    )
    (folder / "tokenizer.vocab").unlink()
    corpus.unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LLaMATokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
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
