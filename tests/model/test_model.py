"""The model path on the tiny checkpoints: tokenizer, prompt, projection sum, delta, LoRA, generation."""

from __future__ import annotations

import copy
import dataclasses
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from pandagpt_demo.config import ImageBindArch, ModelConfig, SamplingParams, ServingConfig
from pandagpt_demo.errors import BadInput, PromptTooLong
from pandagpt_demo.model.checkpoints import CheckpointError
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.generation import sample_next, stream_text
from pandagpt_demo.model.modalities import MediaError, Modality
from pandagpt_demo.model.pandagpt import PandaGPT
from pandagpt_demo.serving.engine import Engine
from pandagpt_demo.serving.start import start_engine
from tests.media import write_image, write_samples

GREEDY = SamplingParams(max_new_tokens=12, temperature=0.0)


def two_turns() -> Conversation:
    conversation = Conversation()
    conversation.ask("What is in the image?")
    conversation.answer("A red square.")
    conversation.ask("Why?")
    return conversation


def test_real_llama_tokenizer(tiny_model: PandaGPT) -> None:
    assert tiny_model.tokenizer("Hello world").input_ids == [1, 15043, 3186]
    assert len(tiny_model.tokenizer) == 32000


def test_two_turn_prompt_text_and_ids(tiny_model: PandaGPT) -> None:
    conversation = two_turns()
    assert conversation.dialogue() == "What is in the image?\n### Assistant: A red square.\n### Human: Why?"
    before, after = tiny_model.prompt_ids(conversation, with_vector=True)
    # <s> "### Human: <Img>" with the real LLaMA vocabulary
    assert before == [1, 835, 12968, 29901, 529, 25518, 29958]
    tok = lambda text: tiny_model.tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    assert after == tok("</Img> What is in the image?\n### Assistant: A red square.\n### Human: Why?\n### Assistant:")
    assert after[:3] == [1533, 25518, 29958]  # "▁</" "Img" ">"
    assert after[-5:] == [13, 2277, 29937, 4007, 22137, 29901][-5:]  # "\n" "##" "#" "▁Ass" "istant" ":"


def test_text_only_prompt_has_no_image_tags(tiny_model: PandaGPT) -> None:
    conversation = Conversation()
    conversation.ask("Hi")
    before, after = tiny_model.prompt_ids(conversation, with_vector=False)
    assert before == [1]
    assert tiny_model.tokenizer.decode(after) == "### Human: Hi\n### Assistant:"
    embeds = tiny_model.prompt_embeds(conversation, None)
    assert embeds.shape == (1, 1 + len(after), tiny_model.llm.config.hidden_size)


def test_vector_sits_between_the_tags(tiny_model: PandaGPT) -> None:
    conversation = two_turns()
    vector = torch.randn(tiny_model.llm.config.hidden_size)
    embeds = tiny_model.prompt_embeds(conversation, vector)
    before, after = tiny_model.prompt_ids(conversation, with_vector=True)
    assert embeds.shape[1] == len(before) + 1 + len(after)
    torch.testing.assert_close(embeds[0, len(before)], vector)
    table = tiny_model.llm.get_input_embeddings().weight
    torch.testing.assert_close(embeds[0, 0], table[1])  # BOS


def test_files_are_summed_with_their_weights(tiny_model: PandaGPT, media_dir: Path) -> None:
    """Any mix, several of a kind too: two images with weights a and b give a·v1 + b·v2."""
    image, other, sound = media_dir / "sum.png", media_dir / "other.png", media_dir / "sum.wav"
    write_image(image)
    write_image(other, seed=7)
    t = np.linspace(0, 1.5, 24000, endpoint=False)
    write_samples(sound, 0.5 * np.sin(2 * np.pi * 440 * t), 16000)
    i1, i2 = tiny_model.embed_file(Modality.IMAGE, image), tiny_model.embed_file(Modality.IMAGE, other)
    sound_vector = tiny_model.embed_file(Modality.AUDIO, sound)
    assert i1.shape == (tiny_model.config.spec.imagebind.out_embed_dim,)  # ImageBind's vector: each is projected alone when summed
    v1, v2, audio = (tiny_model.project(vector) for vector in (i1, i2, sound_vector))
    assert not torch.allclose(v1, v2) and not torch.allclose(v1, audio)
    torch.testing.assert_close(tiny_model.fuse([i1, sound_vector]), v1 + audio)
    torch.testing.assert_close(tiny_model.fuse([i1, i2], [0.7, -0.3]), 0.7 * v1 - 0.3 * v2)
    torch.testing.assert_close(tiny_model.fuse([i1, i2, sound_vector], [1.0, 0.5, 1.0]), v1 + 0.5 * v2 + audio)
    assert tiny_model.fuse([]) is None
    with pytest.raises(ValueError):
        tiny_model.fuse([i1, i2], [1.0])


def test_non_finite_embeddings_are_refused_before_any_prompt(tiny_model: PandaGPT, media_dir: Path) -> None:
    """An encoder that overflows on a file (huge projection weights here) names the file; a weighted sum
    that overflows (float16 vectors near its limit) names the weights."""
    image = media_dir / "overflow.png"
    write_image(image)
    overflowing = copy.copy(tiny_model)
    overflowing.llama_proj = copy.deepcopy(tiny_model.llama_proj)
    with torch.no_grad():
        overflowing.llama_proj.weight.mul_(torch.inf)
    with pytest.raises(MediaError, match=r"image file 'overflow.png': its embedding is not finite"):
        overflowing.embed_file(Modality.IMAGE, image)
    as_projected = copy.copy(tiny_model)
    as_projected.project = lambda vector: vector  # the vectors below stand for projected ones
    near_limit = [torch.full((8,), 60000.0, dtype=torch.float16), torch.full((8,), 1.0, dtype=torch.float16)]
    assert torch.isfinite(as_projected.fuse(near_limit)).all()
    with pytest.raises(BadInput, match=r"weighted sum of the 2 embedding\(s\) is not finite; lower the weights"):
        as_projected.fuse(near_limit, [2.0, 1.0])


def test_audio_embedding_is_not_scaled_by_20(tiny_model: PandaGPT) -> None:
    """PandaGPT uses only the L2 normalization of ImageBind's audio postprocessor."""
    clips = torch.randn(1, 3, 1, 128, 204)
    embedding = tiny_model.encoder("audio", clips)
    assert 0.5 < float(embedding.norm()) <= 1.0 + 1e-5  # a mean of unit vectors, not 20x
    thermal = tiny_model.encoder("thermal", torch.rand(1, 1, 224, 224))
    assert float(thermal.norm()) == pytest.approx(10.0, rel=1e-4)


def logits_of(model: PandaGPT) -> torch.Tensor:
    embeds = model.prompt_embeds(two_turns(), torch.ones(model.llm.config.hidden_size))
    with torch.inference_mode():
        return model.llm(inputs_embeds=embeds).logits


def test_merged_lora_gives_the_same_logits(tiny_config: ModelConfig, tiny_model: PandaGPT) -> None:
    unmerged = PandaGPT.load(tiny_config.updated(merge_lora=False))
    assert type(unmerged.llm).__name__.startswith("Peft")
    assert not type(tiny_model.llm).__name__.startswith("Peft")
    torch.testing.assert_close(logits_of(unmerged), logits_of(tiny_model), rtol=1e-5, atol=1e-5)
    without_lora = PandaGPT.load(tiny_config.updated(merge_lora=False))
    without_lora.llm.disable_adapter_layers()
    assert not torch.allclose(logits_of(without_lora), logits_of(tiny_model), atol=1e-4), "the delta's LoRA must change the model"


def rewrite_delta(config: ModelConfig, tmp_path: Path, change) -> ModelConfig:
    state = torch.load(config.files.delta_path, weights_only=True)
    state = change(state)
    path = tmp_path / "pytorch_model.pt"
    torch.save(state, path)
    return config.updated(delta_path=path)


def test_delta_keys_without_default_load_the_same(tiny_config: ModelConfig, tiny_model: PandaGPT, tmp_path: Path) -> None:
    plain = rewrite_delta(tiny_config, tmp_path, lambda s: {k.replace(".default.weight", ".weight"): v for k, v in s.items()})
    assert all(".default" not in k for k in torch.load(plain.files.delta_path, weights_only=True))
    torch.testing.assert_close(logits_of(PandaGPT.load(plain)), logits_of(tiny_model))


def test_special_tokens_come_from_the_vocabulary_not_the_folder(tiny_config: ModelConfig, tmp_path: Path) -> None:
    """Early Vicuna folders write bos 0 / eos 1 in config.json and empty special tokens in
    tokenizer_config.json; the prompt must still start with <s> (1) and answers stop at </s> (2)."""
    import json
    import shutil

    folder = shutil.copytree(tiny_config.files.vicuna_dir, tmp_path / "vicuna_old_style")
    config_file, tokenizer_file = folder / "config.json", folder / "tokenizer_config.json"
    config_file.write_text(json.dumps(json.loads(config_file.read_text()) | {"bos_token_id": 0, "eos_token_id": 1}))
    tokenizer_file.write_text(json.dumps(json.loads(tokenizer_file.read_text()) | {"bos_token": "", "eos_token": "", "unk_token": ""}))
    model = PandaGPT.load(tiny_config.updated(vicuna_dir=folder))
    conversation = Conversation()
    conversation.ask("Hi")
    assert model.prompt_ids(conversation, with_vector=False)[0][0] == 1
    assert (model.tokenizer.bos_token_id, model.tokenizer.eos_token_id) == (1, 2)


def test_delta_with_wrong_key_fails_loudly(tiny_config: ModelConfig, tmp_path: Path) -> None:
    def rename(state: dict) -> dict:
        key = next(k for k in state if "layers.1.self_attn.v_proj.lora_A" in k)
        state["llama_model.base_model.model.model.layers.1.self_attn.v_proj.lora_X.weight"] = state.pop(key)
        return state

    with pytest.raises(CheckpointError) as error:
        PandaGPT.load(rewrite_delta(tiny_config, tmp_path, rename))
    message = str(error.value)
    assert "1 missing keys" in message and "layers.1.self_attn.v_proj.lora_A.default.weight" in message
    assert "1 unexpected keys" in message and "lora_X" in message
    assert str(tmp_path / "pytorch_model.pt") in message


def test_delta_without_llama_proj_or_wrong_shape(tiny_config: ModelConfig, tmp_path: Path) -> None:
    no_proj = rewrite_delta(tiny_config, tmp_path, lambda s: {k: v for k, v in s.items() if "llama_proj" not in k})
    with pytest.raises(CheckpointError, match="lacks llama_proj.weight, llama_proj.bias"):
        PandaGPT.load(no_proj)
    wrong = rewrite_delta(tiny_config, tmp_path, lambda s: s | {"llama_proj.weight": torch.zeros(64, 1024)})
    with pytest.raises(CheckpointError, match=r"llama_proj.weight: file \(64, 1024\), model \(64, 32\)"):
        PandaGPT.load(wrong)


def test_missing_checkpoints_name_the_path_and_the_fix(tiny_config: ModelConfig, tmp_path: Path) -> None:
    missing = tiny_config.updated(imagebind_path=tmp_path / "nowhere" / "imagebind_huge.pth")
    with pytest.raises(CheckpointError, match=r"ImageBind checkpoint not found at '.*nowhere/imagebind_huge.pth'.*make-tiny"):
        PandaGPT.load(missing)
    with pytest.raises(CheckpointError, match="Vicuna folder"):
        PandaGPT.load(tiny_config.updated(vicuna_dir=tmp_path / "no_vicuna"))
    real = ModelConfig.preset("7b", tmp_path)
    with pytest.raises(CheckpointError, match="openllmplayground/pandagpt_7b_max_len_1024"):
        PandaGPT.load(real)


def test_delta_with_a_lora_tensor_under_both_names_fails(tiny_config: ModelConfig, tmp_path: Path) -> None:
    """`...lora_A.weight` and `...lora_A.default.weight` are one tensor for peft: which would win is not ours to guess."""
    key = "llama_model.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
    twice = rewrite_delta(tiny_config, tmp_path, lambda s: s | {key.replace(".default", ""): torch.zeros_like(s[key])})
    with pytest.raises(CheckpointError) as error:
        PandaGPT.load(twice)
    message = str(error.value)
    assert "the same LoRA tensor twice" in message and key in message and key.replace(".default", "") in message
    assert str(twice.files.delta_path) in message


def vicuna_copy(config: ModelConfig, tmp_path: Path, change) -> ModelConfig:
    """The tiny set with a copy of its Vicuna folder, `change`d (it gets the folder)."""
    folder = shutil.copytree(config.files.vicuna_dir, tmp_path / "vicuna")
    change(folder)
    return config.updated(vicuna_dir=folder)


def test_vicuna_missing_tensors_fail_naming_the_folder_and_keys(tiny_config: ModelConfig, tmp_path: Path) -> None:
    """transformers would initialise them randomly and only warn."""

    def drop(folder: Path) -> None:
        state = load_file(folder / "model.safetensors")
        for layer in (0, 1):
            del state[f"model.layers.{layer}.mlp.down_proj.weight"]
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})

    config = vicuna_copy(tiny_config, tmp_path, drop)
    with pytest.raises(CheckpointError) as error:
        PandaGPT.load(config)
    message = str(error.value)
    assert f"Vicuna folder '{config.files.vicuna_dir}' lacks 2 of the model's tensors" in message
    assert "model.layers.0.mlp.down_proj.weight, model.layers.1.mlp.down_proj.weight" in message
    assert "make-tiny" in message  # how to get it again


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_a_truncated_vicuna_shard_is_named(tiny_config: ModelConfig, tmp_path: Path, weights: str) -> None:
    def truncate(folder: Path) -> None:
        if weights == "pytorch_model.bin":
            torch.save(load_file(folder / "model.safetensors"), folder / weights)
            (folder / "model.safetensors").unlink()
        data = (folder / weights).read_bytes()
        (folder / weights).write_bytes(data[: len(data) // 2])  # an interrupted download

    config = vicuna_copy(tiny_config, tmp_path, truncate)
    with pytest.raises(CheckpointError) as error:
        PandaGPT.load(config)
    assert f"Vicuna weight shard '{config.files.vicuna_dir / weights}' is truncated or corrupt" in str(error.value)
    assert "download it again" in str(error.value)


def test_a_vicuna_folder_without_tokenizer_files_fails(tiny_config: ModelConfig, tmp_path: Path) -> None:
    config = vicuna_copy(tiny_config, tmp_path, lambda folder: (folder / "tokenizer.json").unlink())
    with pytest.raises(CheckpointError, match=rf"Vicuna folder '{re.escape(str(config.files.vicuna_dir))}' could not be loaded: .*has no tokenizer"):
        PandaGPT.load(config)


def test_corrupt_and_mismatched_imagebind(tiny_config: ModelConfig, tmp_path: Path) -> None:
    corrupt = tmp_path / "imagebind_huge.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch state dict"):
        PandaGPT.load(tiny_config.updated(imagebind_path=corrupt))
    wider = dataclasses.replace(ImageBindArch.tiny(), vision_embed_dim=48)
    with pytest.raises(CheckpointError, match=r"wrong shapes: .*vision.*file \(32.*model \(48"):
        PandaGPT.load(tiny_config.updated(imagebind=wider))


def answer(model: PandaGPT, params: SamplingParams, vector: torch.Tensor | None = None, **kwargs) -> list[str]:
    conversation = Conversation()
    conversation.ask("Describe it.")
    return list(model.stream(conversation, vector, params, start_engine(model, ServingConfig.inline()), **kwargs))


def test_streaming_yields_pieces_without_stop_text(tiny_model: PandaGPT) -> None:
    vector = torch.randn(tiny_model.llm.config.hidden_size)
    pieces = answer(tiny_model, SamplingParams(max_new_tokens=24, temperature=1.0, top_p=0.9, seed=3), vector)
    assert len(pieces) > 1
    assert all(pieces)
    assert "###" not in "".join(pieces)


def test_greedy_is_deterministic_and_zero_settings_do_not_crash(tiny_model: PandaGPT) -> None:
    vector = torch.randn(tiny_model.llm.config.hidden_size)
    first = answer(tiny_model, GREEDY, vector)
    assert first == answer(tiny_model, GREEDY, vector)
    top_p_zero = answer(tiny_model, SamplingParams(max_new_tokens=12, top_p=0.0, temperature=0.7), vector)
    assert "".join(top_p_zero) == "".join(first)
    seeded = SamplingParams(max_new_tokens=12, temperature=1.5, top_p=1.0, seed=7)
    assert answer(tiny_model, seeded, vector) == answer(tiny_model, seeded, vector)


def test_sampling_respects_top_p() -> None:
    logits = torch.tensor([3.0, 2.9, -5.0, -5.0])
    picks = {sample_next(logits, SamplingParams(top_p=0.5, temperature=1.0), torch.Generator().manual_seed(s)) for s in range(40)}
    assert picks == {0}  # the top token alone holds over half the mass
    picks = {sample_next(logits, SamplingParams(top_p=0.99, temperature=1.0), torch.Generator().manual_seed(s)) for s in range(40)}
    assert picks == {0, 1}


def test_stream_text_stops_at_stop_text_and_keeps_spaces(tiny_model: PandaGPT) -> None:
    tokenizer = tiny_model.tokenizer
    ids = tokenizer("Hello world, how are you?\n### Human: next", add_special_tokens=False).input_ids
    pieces = list(stream_text(tokenizer, iter(ids), "###"))
    assert "".join(pieces) == "Hello world, how are you?"
    assert len(pieces) > 3
    consumed = []
    list(stream_text(tokenizer, (consumed.append(i) or i for i in ids), "###"))
    assert len(consumed) < len(ids)  # generation is abandoned at the stop text


def test_streamed_characters_split_over_byte_tokens_arrive_whole(tiny_model: PandaGPT) -> None:
    """LLaMA spells characters outside its vocabulary (most emoji) as UTF-8 byte tokens; the stream
    must never show the partial bytes, nor lose the space before them."""
    tokenizer = tiny_model.tokenizer
    text = "panda 🐼 emoji ☃ and 日本 ok"
    ids = tokenizer(text + "\n### Human: next", add_special_tokens=False).input_ids
    assert len(ids) > len(tokenizer(text.replace("🐼", "x").replace("☃", "x"), add_special_tokens=False).input_ids) + 3  # bytes, really
    pieces = list(stream_text(tokenizer, iter(ids), "###"))
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)


def test_cancel_stops_generation(tiny_model: PandaGPT) -> None:
    cancel = threading.Event()
    conversation = Conversation()
    conversation.ask("Go on")
    stream = tiny_model.stream(
        conversation, None, SamplingParams(max_new_tokens=200, temperature=0.0), start_engine(tiny_model, ServingConfig.inline()), cancel
    )
    next(stream)
    cancel.set()
    rest = list(stream)
    assert len(rest) <= 1


def test_context_drops_oldest_turns(tiny_config: ModelConfig, tiny_model: PandaGPT, tiny_engine: Engine) -> None:
    """The oldest turns go, the open question stays, and the answer decoded in the 80-token context is
    the one the same weights give (with room to spare) for the kept turns alone: nothing of the
    dropped turns reaches the prompt and no position runs past the context."""
    model = PandaGPT.load(tiny_config.updated(context_length=80))
    conversation = Conversation()
    for index in range(6):
        conversation.ask(f"Question number {index} about the picture?")
        conversation.answer(f"Answer number {index}.")
    conversation.ask("And now?")
    turns = list(conversation.turns)
    fit = model.fit(conversation, with_vector=True, max_new_tokens=20)
    assert fit.dropped_turns > 0
    assert conversation.turns == turns[fit.dropped_turns :] and conversation.turns[-1].question == "And now?"
    before, after = model.prompt_ids(conversation, True)
    assert len(before) + 1 + len(after) + fit.max_new_tokens <= 80
    params = dataclasses.replace(GREEDY, max_new_tokens=fit.max_new_tokens)
    vector = torch.linspace(-1, 1, 64)
    answer = "".join(model.stream(conversation, vector, params, start_engine(model, ServingConfig.inline())))
    kept = Conversation(conversation.template, turns[fit.dropped_turns :])
    assert answer.strip() and answer == "".join(tiny_model.stream(kept, vector, params, tiny_engine))
    assert answer != "".join(tiny_model.stream(Conversation(conversation.template, turns), vector, params, tiny_engine)), (
        "the whole history gives another answer: the test would see turns that were not dropped"
    )
    huge = Conversation()
    huge.ask("word " * 200)
    with pytest.raises(PromptTooLong, match="holds 80"):
        model.fit(huge, with_vector=False, max_new_tokens=10)


def test_bad_file_leaves_the_model_usable(tiny_model: PandaGPT, media_dir: Path) -> None:
    bad = media_dir / "notes.wav"
    bad.write_text("this is not audio")
    with pytest.raises(MediaError, match="notes.wav"):
        tiny_model.embed_file(Modality.AUDIO, bad)
    image = media_dir / "after_bad.png"
    write_image(image)
    assert answer(tiny_model, GREEDY, tiny_model.fuse([tiny_model.embed_file(Modality.IMAGE, image)]))


def test_concurrent_video_embeddings_match_sequential(tiny_model: PandaGPT, media_dir: Path) -> None:
    """Two users' videos encoded at the same moment each get their own, correct vector."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.media import write_video

    videos = [media_dir / "one.mp4", media_dir / "two.mp4"]
    write_video(videos[0], seconds=3, fps=10)
    write_video(videos[1], seconds=5, fps=8, size=(240, 320))
    alone = [tiny_model.embed_file(Modality.VIDEO, video) for video in videos]
    assert not torch.allclose(alone[0], alone[1])
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda i: tiny_model.embed_file(Modality.VIDEO, videos[i % 2]), range(8)))
    for index, vector in enumerate(together):
        torch.testing.assert_close(vector, alone[index % 2])


@pytest.mark.parametrize("bits", ["8bit", "4bit"])
def test_a_quantized_llm_answers_close_to_full_precision(tiny_config: ModelConfig, tiny_model: PandaGPT, bits: str) -> None:
    """8/4-bit on the CPU (PyTorch's packed kernels, the LoRA merged first: test_quantized.py) stays
    close to the float32 model's logits, and answers."""
    quantized = PandaGPT.load(tiny_config.updated(quantize=bits))
    layer = quantized.llm.model.layers[0].self_attn.q_proj
    assert type(layer).__name__ == {"8bit": "Int8Linear", "4bit": "Int4Linear"}[bits]
    reference = logits_of(tiny_model)
    relative_error = float((logits_of(quantized).float() - reference).abs().max() / reference.abs().max())
    assert relative_error < {"8bit": 0.03, "4bit": 0.25}[bits]
    assert answer(quantized, GREEDY)


def test_a_quantized_llm_decodes_in_the_shared_batch(tiny_config: ModelConfig) -> None:
    """The engine (the batch's KV cache, inputs_embeds prompts) runs on the int4 model unchanged:
    served answers, decoded together, equal the unbatched ones. In float32 activations: in bfloat16 a
    row alone and the same row in a padded batch round differently, and a random tiny model's flat
    logits let that change a greedy token."""
    from concurrent.futures import ThreadPoolExecutor

    quantized = PandaGPT.load(tiny_config.updated(quantize="4bit", dtype="float32"))

    def ask(question: str, engine: Engine) -> str:
        conversation = Conversation()
        conversation.ask(question)
        return "".join(quantized.stream(conversation, None, GREEDY, engine))

    questions = ["Describe it.", "What colour is the sky in the picture, and why?"]
    alone = [ask(question, start_engine(quantized, ServingConfig.inline())) for question in questions]
    decoder = start_engine(quantized, ServingConfig(max_batch=4, max_waiting=4))
    try:
        with ThreadPoolExecutor(len(questions)) as pool:
            together = list(pool.map(lambda question: ask(question, decoder), questions))
    finally:
        decoder.close()
    assert together == alone and all(alone)
    assert decoder.steps["batch"] > 0


def test_old_rotary_buffers_load_and_foreign_tensors_are_refused(tiny_config: ModelConfig, tiny_model: PandaGPT, tmp_path: Path) -> None:
    """Vicuna v0's `.bin` files carry `rotary_emb.inv_freq` buffers, which the model computes itself: the
    folder loads as without them. A tensor the model has no place for is refused, as `weights check` refuses it."""
    layers = tiny_model.llm.config.num_hidden_layers
    head_dim = tiny_model.llm.config.hidden_size // tiny_model.llm.config.num_attention_heads

    def old_style(extra: dict[str, torch.Tensor]):
        def change(folder: Path) -> None:
            state = load_file(folder / "model.safetensors") | extra
            torch.save(state, folder / "pytorch_model.bin")
            (folder / "model.safetensors").unlink()

        return change

    buffers = {f"model.layers.{i}.self_attn.rotary_emb.inv_freq": torch.ones(head_dim // 2) for i in range(layers)}
    old = PandaGPT.load(vicuna_copy(tiny_config, tmp_path / "old", old_style(buffers)))
    torch.testing.assert_close(logits_of(old), logits_of(tiny_model), rtol=0, atol=0)
    foreign = vicuna_copy(tiny_config, tmp_path / "foreign", old_style({"model.layers.0.mlp.gate_bias": torch.zeros(128)}))
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: model\.layers\.0\.mlp\.gate_bias"):
        PandaGPT.load(foreign)
