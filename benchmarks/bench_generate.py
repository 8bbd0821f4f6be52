"""Benchmark PandaGPT generation: this project's path against the original PandaGPT approach.

    python benchmarks/bench_generate.py --size 13b --device cuda --json results.json
    python benchmarks/bench_generate.py --size tiny            # CPU smoke run, well under a minute

Random weights at the named size (no checkpoint needed). Both paths are measured in the same run:
- original: peft LoRA left unmerged, float16 (float32 on CPU), `generate` one request at a time;
- project: LoRA merged at load, every answer through the app's `BatchedDecoder` (requests decoded
  together; on CUDA a lone request in a static cache compiled into CUDA graphs, the batch step
  compiled with dynamic shapes; compiling happens in `serve`'s warm-up, timed apart).
Fidelity is checked in the same run: the original's greedy answer to the image question and its
first-step logits, against the project's merged model (logits) and the project's engine (tokens).
Prints a table with the ratio project / original for each figure and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pandagpt_demo.config import (
    EXAMPLES_FILE,
    LLAMA_SHAPES,
    QUANTIZATIONS,
    ImageBindArch,
    ModelConfig,
    ModelFiles,
    ModelSpec,
    RunSettings,
    SamplingParams,
    ServingConfig,
)
from pandagpt_demo.model.checkpoints import wrap_lora
from pandagpt_demo.model.conversation import Conversation
from pandagpt_demo.model.encoder import ImageBindEncoder
from pandagpt_demo.model.modalities import Modality
from pandagpt_demo.model.pandagpt import PandaGPT, resolve_dtype
from pandagpt_demo.serving.start import start_engine
from pandagpt_demo.weights.synthetic import llama_tokenizer, write_random_model_set

EXAMPLES = EXAMPLES_FILE.parent
EXAMPLE_FILES = {
    Modality.IMAGE: EXAMPLES / "sunset.jpg",
    Modality.AUDIO: EXAMPLES / "dog_bark.wav",
    Modality.VIDEO: EXAMPLES / "bouncing_ball.mp4",
    Modality.THERMAL: EXAMPLES / "thermal_person.png",
    Modality.DEPTH: EXAMPLES / "depth_room.png",
    Modality.IMU: EXAMPLES / "imu_walking.csv",
}
QUESTION = "Describe this image in detail."


def build(size: str, device: str, dtype_name: str, compile_steps: bool = True) -> PandaGPT:
    """A PandaGPT of the named size with random weights, LoRA attached but not merged."""
    from transformers import LlamaForCausalLM

    arch = ImageBindArch.tiny() if size == "tiny" else ImageBindArch()
    files = ModelFiles(imagebind_path=Path(), vicuna_dir=Path(), delta_path=Path())  # nothing is read: the weights are made here
    config = ModelConfig(
        name=size, files=files, spec=ModelSpec(imagebind=arch), run=RunSettings(device=device, dtype=dtype_name, compile=compile_steps)
    )
    dtype = resolve_dtype(dtype_name, device)
    torch.manual_seed(0)
    with torch.device(device):
        encoder = ImageBindEncoder(arch).to(dtype)
        llm = LlamaForCausalLM._from_config(LLAMA_SHAPES[size].llama_config(), dtype=dtype)
        llm = wrap_lora(llm, config.spec.lora)
        for name, parameter in llm.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(parameter, std=0.02)
        proj = torch.nn.Linear(arch.out_embed_dim, llm.config.hidden_size).to(dtype)
    return PandaGPT(config, encoder, proj.requires_grad_(False), llm.eval(), llama_tokenizer())


def load_quantized(args: argparse.Namespace, folder: Path) -> PandaGPT:
    """Random weights of the size written in the released formats, loaded with the LLM in 8/4 bits."""
    layout = ModelConfig.tiny(folder) if args.size == "tiny" else ModelConfig.preset(args.size, folder)
    write_random_model_set(layout, args.size, device=args.device)
    return PandaGPT.load(layout.updated(device=args.device, dtype=args.dtype, quantize=args.quantize))


def reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory(device: str) -> dict[str, float]:
    """Peak GPU memory since the last reset (nothing off CUDA)."""
    return {"peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30} if device.startswith("cuda") else {}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, work: Callable[[], object]) -> float:
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


def image_prompt(model: PandaGPT) -> torch.Tensor:
    """File decode + ImageBind + projection + prompt embeddings for one image question."""
    conversation = Conversation()
    conversation.ask(QUESTION)
    return model.prompt_embeds(conversation, model.fuse([model.embed_file(Modality.IMAGE, EXAMPLE_FILES[Modality.IMAGE])]))


def original_generate(model: PandaGPT, embeds: torch.Tensor, new_tokens: int) -> int:
    """What the original did per request: `generate` on the unmerged model, no EOS stop here."""
    with torch.inference_mode():
        out = model.llm.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=model.tokenizer.eos_token_id,
        )
    return out.shape[1]


@dataclasses.dataclass
class Reference:
    """The original's greedy answer to one prompt, for the project's to be compared with."""

    embeds: torch.Tensor  # the prompt, as the project's dtype takes it
    tokens: list[int]  # up to, not including, EOS
    logits: torch.Tensor  # the first step's, float32 on the CPU


def greedy_reference(model: PandaGPT, embeds: torch.Tensor, new_tokens: int, project_dtype: torch.dtype) -> Reference:
    """The greedy answer as the original's `generate` gives it and its first step's logits."""
    with torch.inference_mode():
        logits = model.llm(inputs_embeds=embeds).logits[0, -1].float().cpu()
        out = model.llm.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device),
            max_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=model.tokenizer.eos_token_id,
        )
    tokens = out[0].tolist()
    eos = model.tokenizer.eos_token_id
    return Reference(embeds.to(project_dtype), tokens[: tokens.index(eos)] if eos in tokens else tokens, logits)


def fidelity(reference: Reference, tokens: list[int], logits: torch.Tensor) -> dict[str, float]:
    """How the project's answer and first-step logits compare with the original's (the same prompt embeddings)."""
    expected, expected_logits = reference.tokens, reference.logits
    first_difference = next((i for i, (a, b) in enumerate(zip(expected, tokens)) if a != b), None)
    if first_difference is None and len(expected) != len(tokens):
        first_difference = min(len(expected), len(tokens))
    return {
        "fidelity_same_tokens": float(expected == tokens),
        "fidelity_tokens_compared": float(len(expected)),
        "fidelity_first_difference": float(-1 if first_difference is None else first_difference),
        "fidelity_logits_max_abs": (expected_logits - logits).abs().max().item(),
        "fidelity_same_first_token": float(expected_logits.argmax().item() == logits.argmax().item()),
    }


def measure_original(model: PandaGPT, args: argparse.Namespace) -> dict[str, float]:
    device = args.device
    results = {"ttft_ms": 1000 * timed(device, lambda: original_generate(model, image_prompt(model), 1))}
    embeds = image_prompt(model)
    seconds = timed(device, lambda: original_generate(model, embeds, args.new_tokens))
    results["decode_tok_s_batch1"] = args.new_tokens / seconds
    first_token_ms = 1000 * timed(device, lambda: original_generate(model, embeds, 1))  # prompt ready, as in the sessions
    for sessions in args.original_sessions or args.sessions:  # a queue that serves one request at a time
        seconds = timed(device, lambda: [original_generate(model, embeds, args.new_tokens) for _ in range(sessions)])
        results[f"aggregate_tok_s_{sessions}"] = sessions * args.new_tokens / seconds
        # the last in the queue waits for every answer before it, then needs its own first token
        results[f"worst_first_token_ms_{sessions}"] = 1000 * seconds * (sessions - 1) / sessions + first_token_ms
    return results


def measure_project(model: PandaGPT, args: argparse.Namespace, reference: Reference | None) -> dict[str, float]:
    """The app's path: every answer goes through the continuous-batching engine (`serving.start.start_engine`).

    With a `reference` (same weights as the original), the engine's greedy answer to its prompt is compared with it."""
    device = args.device
    if reference is not None:
        with torch.inference_mode():
            first_logits = model.llm(inputs_embeds=reference.embeds).logits[0, -1].float().cpu()
    greedy = SamplingParams(max_new_tokens=args.new_tokens, temperature=0.0)
    engines = []
    serve_seconds = timed(
        device,
        lambda: engines.append(
            start_engine(model, ServingConfig(max_batch=max(args.sessions), max_waiting=max(args.sessions), stall_timeout=None, answer_timeout=None))
        ),
    )
    decoder = engines[0]
    try:
        list(decoder.generate(image_prompt(model), dataclasses.replace(greedy, max_new_tokens=8)))  # warm-up
        results = {"serve_warm_up_s": serve_seconds}  # on CUDA: compiling every kind of decode step
        if reference is not None:
            answer = list(decoder.generate(reference.embeds, dataclasses.replace(greedy, max_new_tokens=args.fidelity_tokens)))
            results |= fidelity(reference, answer, first_logits)
        results["ttft_ms"] = 1000 * timed(device, lambda: next(iter(decoder.generate(image_prompt(model), greedy))))
        embeds = image_prompt(model)
        seconds = timed(device, lambda: list(decoder.generate(embeds, greedy)))
        results["decode_tok_s_batch1"] = args.new_tokens / seconds
        for sessions in args.sessions:
            counts, first_token = [0] * sessions, [float("inf")] * sessions
            start = time.perf_counter()

            def session(index: int) -> None:
                for _ in decoder.generate(embeds, greedy):
                    first_token[index] = min(first_token[index], time.perf_counter() - start)
                    counts[index] += 1

            threads = [threading.Thread(target=session, args=(i,)) for i in range(sessions)]
            seconds = timed(device, lambda: ([t.start() for t in threads], [t.join() for t in threads]))
            results[f"aggregate_tok_s_{sessions}"] = sum(counts) / seconds
            results[f"worst_first_token_ms_{sessions}"] = 1000 * max(first_token)  # every session streams from then on
            if set(counts) != {args.new_tokens}:
                raise RuntimeError(f"{sessions} sessions: tokens per session {counts}, expected {args.new_tokens} each")
        results |= {f"decode_steps_{way}": float(count) for way, count in decoder.steps.items()}
    finally:
        decoder.close()
    for modality, path in EXAMPLE_FILES.items():
        model.embed_file(modality, path)  # warm-up
        results[f"encode_ms_{modality.value}"] = 1000 * timed(device, lambda: model.embed_file(modality, path))
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=tuple(LLAMA_SHAPES), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", help="project path dtype (the original is always float16 on CUDA)")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--original-sessions",
        type=int,
        nargs="*",
        metavar="N",
        help="session counts measured for the original (default: as --sessions); it serves one request at a time, "
        "so its aggregate is its batch-1 rate, and 16 sequential 13B answers take minutes",
    )
    parser.add_argument("--quantize", choices=QUANTIZATIONS, help="project path with the LLM in 8/4 bits (written to a temp folder, then loaded)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="project path: decode steps not compiled")
    parser.add_argument("--fidelity-tokens", type=int, default=64, help="greedy tokens compared between the original and the project")
    parser.add_argument("--json", type=Path, default=Path("bench_generate.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")  # the warm-up's steps, as they finish

    model = build(args.size, args.device, "auto", args.compile)
    image_prompt(model)  # warm-up: first calls pay for lazy initialisation
    reset_peak_memory(args.device)
    original = measure_original(model, args) | peak_memory(args.device)
    print("original:", json.dumps(original), flush=True)  # kept in the log should the project's part not finish
    project_dtype = resolve_dtype(args.dtype, args.device)
    # the quantized path loads other random weights: nothing to compare with
    reference = None if args.quantize else greedy_reference(model, image_prompt(model), args.fidelity_tokens, project_dtype)
    if args.quantize:
        del model
        model = load_quantized(args, Path(tempfile.mkdtemp(prefix="bench_weights_")))
    else:
        model.llm = model.llm.merge_and_unload()
        model.llm.to(project_dtype), model.encoder.to(project_dtype), model.llama_proj.to(project_dtype)
        model.dtype = project_dtype
    reset_peak_memory(args.device)
    project = measure_project(model, args, reference) | peak_memory(args.device)

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    bits = f", LLM in {args.quantize}" if args.quantize else ""
    print(f"PandaGPT {args.size}, random weights, {device_name}, project dtype {project_dtype}{bits}, {args.new_tokens} new tokens")
    print(f"{'figure':<28}{'original':>12}{'project':>12}{'ratio':>8}")
    for key, value in project.items():
        before = original.get(key)
        smaller_is_better = "_ms" in key or key.endswith("_gib")
        ratio = "" if before is None else f"{(before / value if smaller_is_better else value / before):.2f}x"
        before_text = "" if before is None else f"{before:.1f}"
        print(f"{key:<28}{before_text:>12}{value:>12.1f}{ratio:>8}")
    result = {
        "size": args.size,
        "device": device_name,
        "dtype": str(project_dtype),
        "quantize": args.quantize,
        "new_tokens": args.new_tokens,
        "original": original,
        "project": project,
    }
    args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
