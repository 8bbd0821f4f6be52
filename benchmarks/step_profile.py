"""Where a decode step's time goes: the host's launches or the GPU's work. Prints as it goes.

    python benchmarks/step_profile.py --size 7b          # on a GPU
    python benchmarks/step_profile.py --size tiny --device cpu

Random LLaMA weights at the named size, batch 1, one token per step after a 600-position prompt.
For each way of running the step: wall milliseconds per step, and on CUDA the GPU's own time per
step (CUDA events around a step captured as one CUDA graph, where no host work can hide in it).
The gap between eager wall time and graph time is host overhead: kernel launches and Python.
A plain Python loop is timed too, to compare this host's speed with another's. Last, the time
`torch.compile(mode="reduce-overhead")` takes to build the static-cache step (the app's warm-up).
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, StaticCache

SHAPES = {  # as pandagpt_demo.config.LLAMA_SHAPES (kept apart: this runs where the package's needs are missing)
    "tiny": (64, 128, 2, 4),
    "7b": (4096, 11008, 32, 32),
    "13b": (5120, 13824, 40, 40),
}


def python_loop_ms() -> float:
    start = time.perf_counter()
    total = 0
    for i in range(2_000_000):
        total += i
    return 1000 * (time.perf_counter() - start)


def per_step_ms(step, device: str, steps: int) -> float:
    for _ in range(3):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=tuple(SHAPES), default="7b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--prompt", type=int, default=600)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    hidden, intermediate, layers, heads = SHAPES[args.size]
    config = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers, num_attention_heads=heads, vocab_size=32000)
    dtype = torch.float16 if args.device == "cuda" else torch.float32
    print(f"python loop of 2M additions: {python_loop_ms():.0f} ms", flush=True)
    torch.manual_seed(0)
    with torch.device(args.device):
        llm = LlamaForCausalLM._from_config(config, dtype=dtype).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in llm.parameters())
    print(f"{args.size}: {weight_bytes / 1e9:.2f} GB of weights", flush=True)
    prompt = torch.randint(0, 32000, (1, args.prompt), device=args.device)
    token = torch.tensor([[5]], device=args.device)

    with torch.inference_mode():
        dynamic = DynamicCache()
        llm(input_ids=prompt, past_key_values=dynamic, use_cache=True)

        def eager_dynamic() -> None:  # what `generate` does per token (the cache grows by concatenation)
            llm(input_ids=token, past_key_values=dynamic, use_cache=True)

        print(f"eager, DynamicCache: {per_step_ms(eager_dynamic, args.device, args.steps):.2f} ms/step", flush=True)

        max_len = args.prompt + 4 * args.steps + 64
        static = StaticCache(config=config, max_cache_len=max_len)
        positions = torch.arange(max_len, device=args.device)
        llm(input_ids=prompt, cache_position=positions[: args.prompt], past_key_values=static, use_cache=True)
        where = positions[args.prompt : args.prompt + 1]

        def eager_static() -> torch.Tensor:  # the app's slot step, uncompiled (always the same position: a timing)
            return llm(input_ids=token, cache_position=where, past_key_values=static, use_cache=True).logits

        print(f"eager, StaticCache: {per_step_ms(eager_static, args.device, args.steps):.2f} ms/step", flush=True)

        if args.device == "cuda":
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    eager_static()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                eager_static()
            replay_ms = per_step_ms(graph.replay, args.device, args.steps)
            bound_ms = weight_bytes / 4.3e12 * 1000
            print(
                f"CUDA graph of the eager static step: {replay_ms:.2f} ms/step "
                f"(weights read at 4.3 TB/s: {bound_ms:.2f} ms, {100 * bound_ms / replay_ms:.0f}% of the bound)",
                flush=True,
            )
            del graph

        start = time.perf_counter()
        compiled = torch.compile(eager_static, mode="reduce-overhead", fullgraph=True)
        for i in range(3):
            compiled()
            print(f"compiled call {i + 1} done after {time.perf_counter() - start:.1f} s", flush=True)
        print(f"torch.compile reduce-overhead, StaticCache: {per_step_ms(compiled, args.device, args.steps):.2f} ms/step", flush=True)


if __name__ == "__main__":
    main()
