"""Benchmark the batch path's KV cache: written in place (the app's) against grown by concatenation.

    python benchmarks/bench_kv_cache.py --size 13b --device cuda --compile --json kv.json
    python benchmarks/bench_kv_cache.py --size 7b --layers 4            # a CPU run that shows the effect
    python benchmarks/bench_kv_cache.py --size tiny                     # smoke run

transformers' `DynamicCache` (what `generate` and this project's batch used before) runs `torch.cat`
on each layer's whole keys and values at every step: at 13B with 16 rows of 700 positions that
moves about 15 GB per step, beside the 26 GB of weights every step must read. `BatchedDecoder` now
holds the batch in a `BatchCache`: a `StaticCache` with spare room (`--spare` positions), written
in place at the left-padded rows' common position and rebuilt larger when full; attention reads up
to `--spare` masked positions more. Both decode the same greedy tokens from the same random model
(checked); the figure is milliseconds per batched decode step, eager or compiled as the batch step
is (inductor, dynamic shapes). Prints a table with the ratio and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pandagpt_demo.config import LLAMA_SHAPES
from pandagpt_demo.model.pandagpt import resolve_dtype
from pandagpt_demo.serving.batch_cache import BatchCache, CacheLayout

Step = Callable[[torch.Tensor], torch.Tensor]  # (rows, 1) token ids -> (rows, vocab) logits


def build(size: str, layers: int | None, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """A LLaMA of the named size (optionally with fewer layers) and random weights."""
    from transformers import LlamaForCausalLM

    shape = LLAMA_SHAPES[size]
    if layers:
        shape = dataclasses.replace(shape, num_hidden_layers=layers)
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM._from_config(shape.llama_config(), dtype=dtype).eval()


class ConcatBatch:
    """Today's batch cache: a DynamicCache, grown by torch.cat at every step."""

    def __init__(self, llm: torch.nn.Module, prefix: list[tuple[torch.Tensor, torch.Tensor]], compile_step: bool) -> None:
        from transformers import DynamicCache

        self.llm, self.cache = llm, DynamicCache([(k.clone(), v.clone()) for k, v in prefix])
        self.forward = torch.compile(self._forward, dynamic=True) if compile_step else self._forward

    def _forward(self, ids: torch.Tensor, cache) -> torch.Tensor:
        return self.llm(input_ids=ids, past_key_values=cache, use_cache=True).logits[:, -1]

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        return self.forward(ids, self.cache)


class InPlaceBatch:
    """The app's batch cache (pandagpt_demo/serving/batch_cache.py): written in place, rebuilt larger when full."""

    def __init__(self, llm: torch.nn.Module, prefix: list[tuple[torch.Tensor, torch.Tensor]], spare: int, compile_step: bool) -> None:
        layout = CacheLayout.for_model(llm.config, spare, prefix[0][0].device)
        self.llm, self.cache = llm, BatchCache(layout, prefix, [0] * prefix[0][0].shape[0], prefix[0][0].shape[2])
        self.forward = torch.compile(self._forward, dynamic=True) if compile_step else self._forward

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache_position: torch.Tensor, cache) -> torch.Tensor:
        output = self.llm(
            input_ids=ids, attention_mask=mask, position_ids=positions, cache_position=cache_position, past_key_values=cache, use_cache=True
        )
        return output.logits[:, -1]

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        mask, positions, cache_position = self.cache.next_step()
        logits = self.forward(ids, mask, positions, cache_position, self.cache.cache)
        self.cache.advance()
        return logits


def time_steps(step: Step, first: torch.Tensor, steps: int, warm_up: int, device: str) -> tuple[float, list[list[int]]]:
    """Milliseconds per step after `warm_up` steps (which compile, if compiling), and every greedy token."""
    ids, tokens = first, []
    for index in range(warm_up + steps):
        if index == warm_up:
            _sync(device)
            start = time.perf_counter()
        ids = step(ids).argmax(dim=-1, keepdim=True)
        tokens.append(ids[:, 0].tolist())
    _sync(device)
    return (time.perf_counter() - start) / steps * 1000, tokens


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(LLAMA_SHAPES), default="tiny")
    parser.add_argument("--layers", type=int, default=None, help="keep only this many layers (a CPU run of a big size)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--rows", type=int, default=16, help="sessions decoded together")
    parser.add_argument("--length", type=int, default=700, help="cached positions per row when timing starts")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--spare", type=int, default=128, help="spare positions of the in-place cache")
    parser.add_argument("--compile", action="store_true", help="compile both steps as the batch step is on CUDA (inductor, dynamic shapes)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    dtype = resolve_dtype(args.dtype, args.device)
    llm = build(args.size, args.layers, args.device, dtype)
    warm_up = 3
    with torch.inference_mode() if not args.compile else torch.no_grad():
        prompt = torch.randint(3, llm.config.vocab_size, (args.rows, args.length - warm_up), device=args.device)
        output = llm(input_ids=prompt, use_cache=True)
        prefix = [(layer.keys, layer.values) for layer in output.past_key_values.layers]
        first = output.logits[:, -1].argmax(dim=-1, keepdim=True)
        concat_ms, concat_tokens = time_steps(ConcatBatch(llm, prefix, args.compile).step, first, args.steps, warm_up, args.device)
        in_place_ms, in_place_tokens = time_steps(InPlaceBatch(llm, prefix, args.spare, args.compile).step, first, args.steps, warm_up, args.device)

    results = {
        "size": args.size,
        "layers": llm.config.num_hidden_layers,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
        "dtype": str(dtype),
        "rows": args.rows,
        "length": args.length,
        "compiled": args.compile,
        "concat_ms_per_step": round(concat_ms, 2),
        "in_place_ms_per_step": round(in_place_ms, 2),
        "same_tokens": concat_tokens == in_place_tokens,
    }
    print(
        f"LLaMA {args.size} ({results['layers']} layers), {results['device']}, {dtype}, {args.rows} rows from {args.length} positions, {'compiled' if args.compile else 'eager'}"
    )
    print(f"{'figure':<24}{'concat (before)':>16}{'in place':>12}{'speed-up':>10}")
    print(f"{'ms per decode step':<24}{concat_ms:>16.1f}{in_place_ms:>12.1f}{concat_ms / in_place_ms:>9.2f}x")
    print(f"same greedy tokens: {results['same_tokens']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
