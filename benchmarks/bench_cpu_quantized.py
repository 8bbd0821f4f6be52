"""int8 and int4 on the CPU against bfloat16, same run: decode speed, memory, start, fidelity, first tokens.

    python benchmarks/bench_cpu_quantized.py --dir /tmp/r7b --size 7b --json benchmarks/results/cpu_quantized_7b.json
    python benchmarks/bench_cpu_quantized.py --size tiny --tokens 16                 # smoke run

Each precision loads in a fresh process (its peak resident memory is its own), twice: the first
load quantizes and writes the cache, the second reads it (the `ready` figure). Then, for a fixed set
of prompts (text only; an image; an image and a sound, the files' vectors summed as the app does):
the first step's logits and `--tokens` greedy tokens, decoded batch-1 through the inline engine;
and, in the int4 process, the time to the first token of an image, a sound and a video question
with ImageBind's share apart. The parent prints each precision's decode tokens/s and its ratio
to bfloat16, and the logits' cosine, top-1 agreement and the greedy tokens' agreement with bfloat16.
ImageBind runs in bfloat16 in every process, so the prompts' vectors are the same: what differs is the LLM.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRECISIONS = {"bfloat16": None, "8bit": "8bit", "4bit": "4bit"}
PROMPTS = ("text", "image", "image+sound")


def vm(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def media(folder: Path) -> dict[str, Path]:
    sys.path.insert(0, str(REPO))  # the tests' writers of media files
    from tests.media import write_image, write_video, write_wav

    files = {"image": folder / "image.png", "sound": folder / "sound.wav", "video": folder / "video.mp4"}
    write_image(files["image"], (320, 240))
    write_wav(files["sound"], 3.0)
    write_video(files["video"], 2.0)
    return files


def child(args: argparse.Namespace) -> None:
    """One precision: load, then the prompts' logits and greedy tokens, written to `args.out`."""
    import torch

    from pandagpt_demo.config import ModelConfig, SamplingParams, ServingConfig
    from pandagpt_demo.model.conversation import Conversation
    from pandagpt_demo.model.modalities import Modality
    from pandagpt_demo.model.pandagpt import PandaGPT
    from pandagpt_demo.serving.start import start_engine

    config = ModelConfig.preset(args.size, args.dir).updated(dtype="bfloat16", quantize=PRECISIONS[args.child])
    start = time.perf_counter()
    model = PandaGPT.load(config)
    ready_s = time.perf_counter() - start
    loaded_gb = vm("VmRSS")
    engine = start_engine(model, ServingConfig.inline())
    files = media(Path(args.media))
    vectors = {name: model.embed_file(Modality.IMAGE if name == "image" else Modality.AUDIO, files[name]) for name in ("image", "sound")}
    fused = {"text": None, "image": model.fuse([vectors["image"]]), "image+sound": model.fuse([vectors["image"], vectors["sound"]])}
    params = SamplingParams(max_new_tokens=args.tokens, temperature=0.0)
    record: dict = {"precision": args.child, "ready_s": ready_s, "loaded_gb": loaded_gb, "prompts": {}}
    logits = {}
    for name, vector in fused.items():
        conversation = Conversation(config.spec.prompt)
        conversation.ask("What do you see and hear? Describe it in detail.")
        embeds = model.prompt_embeds(conversation, vector)
        with torch.inference_mode():
            logits[name] = model.llm(inputs_embeds=embeds).logits[0, -1].float()
        times, tokens = [], []
        last = time.perf_counter()
        for token in engine.generate(embeds, params):
            now = time.perf_counter()
            times.append(now - last)
            last = now
            tokens.append(int(token))
        record["prompts"][name] = {"tokens": tokens, "first_token_s": times[0], "decode_tok_s": (len(times) - 1) / sum(times[1:])}
    if args.child == "4bit":
        record["first_token"] = first_tokens(model, engine, files, config)
    record["peak_gb"] = vm("VmHWM")
    torch.save(logits, Path(args.out).with_suffix(".pt"))
    Path(args.out).write_text(json.dumps(record))


def first_tokens(model, engine, files: dict[str, Path], config) -> dict[str, dict[str, float]]:  # noqa: ANN001
    """Seconds to the first token of one question per kind, and ImageBind's part of them (each file encoded afresh)."""
    from pandagpt_demo.config import SamplingParams
    from pandagpt_demo.model.conversation import Conversation
    from pandagpt_demo.model.modalities import Modality

    kinds = {"image": Modality.IMAGE, "sound": Modality.AUDIO, "video": Modality.VIDEO}
    result = {}
    for name, modality in kinds.items():
        start = time.perf_counter()
        vector = model.fuse([model.embed_file(modality, files[name])])
        encoded = time.perf_counter() - start
        conversation = Conversation(config.spec.prompt)
        conversation.ask("What is this?")
        next(iter(engine.generate(model.prompt_embeds(conversation, vector), SamplingParams(max_new_tokens=1, temperature=0.0))))
        result[name] = {"first_token_s": round(time.perf_counter() - start, 2), "imagebind_s": round(encoded, 2)}
    return result


def matmul_errors(shape) -> dict[str, float]:  # noqa: ANN001
    """Each scheme's relative error of one projection's output against the float weight (random normal weights, 4 rows)."""
    import torch

    from pandagpt_demo.model.quantized import Scheme, quantized_linear

    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(shape.intermediate_size, shape.hidden_size, generator=generator) * 0.02
    x = torch.randn(4, shape.hidden_size, generator=generator).to(torch.bfloat16)
    exact = x.double() @ weight.double().t()
    errors = {}
    for setting in ("8bit", "4bit"):
        scheme = Scheme.named(setting)
        layer = quantized_linear(weight, None, torch.bfloat16, scheme.bits, scheme.group_size)
        errors[setting] = round(float((layer(x).double() - exact).norm() / exact.norm()), 4)
    errors["bfloat16"] = round(float(((x @ weight.to(torch.bfloat16).t()).double() - exact).norm() / exact.norm()), 4)
    return errors


def agreement(reference: list[int], other: list[int]) -> tuple[float, int]:
    """The share of positions with the same token, and the length of the common prefix."""
    same = sum(a == b for a, b in zip(reference, other)) / max(1, len(reference))
    prefix = next((i for i, (a, b) in enumerate(zip(reference, other)) if a != b), min(len(reference), len(other)))
    return same, prefix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=REPO / "checkpoints", help="checkpoints folder of the set (make-random --size 7b DIR)")
    parser.add_argument("--size", default="7b", choices=("7b", "13b", "tiny"))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--fresh-cache", action="store_true", help="delete the quantized caches first (the first load quantizes)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=tuple(PRECISIONS), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--media", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    import torch

    from pandagpt_demo.config import ModelConfig

    config = ModelConfig.preset(args.size, args.dir)
    work = Path(tempfile.mkdtemp(prefix="bench_cpu_quantized_"))
    (work / "media").mkdir()
    records = {}
    for precision in args.precisions.split(","):
        if args.fresh_cache and PRECISIONS[precision]:
            shutil.rmtree(config.files.quantized_dir(PRECISIONS[precision]), ignore_errors=True)
        out = work / f"{precision}.json"
        command = [sys.executable, __file__, "--dir", str(args.dir), "--size", args.size, "--tokens", str(args.tokens), "--child", precision]
        command += ["--media", str(work / "media"), "--out"]
        if PRECISIONS[precision] and not config.files.quantized_dir(PRECISIONS[precision]).is_dir():
            first = time.perf_counter()  # the first load quantizes and writes the cache; the measured one reads it
            subprocess.run([*command, str(work / "first.json")], cwd=REPO, check=True)
            print(f"{precision}: first start (quantizing, cache written) and its run: {time.perf_counter() - first:.0f} s", flush=True)
        subprocess.run([*command, str(out)], cwd=REPO, check=True)
        records[precision] = json.loads(out.read_text()) | {"logits": torch.load(out.with_suffix(".pt"))}
    report(records, args)


def report(records: dict, args: argparse.Namespace) -> None:
    import torch

    base = records.get("bfloat16")
    rows = []
    for precision, record in records.items():
        speeds = [p["decode_tok_s"] for p in record["prompts"].values()]
        row = {
            "precision": precision,
            "ready_s": round(record["ready_s"], 1),
            "loaded_gb": round(record["loaded_gb"], 2),
            "peak_gb": round(record["peak_gb"], 2),
            "decode_tok_s": round(sum(speeds) / len(speeds), 2),
        }
        if base is not None:
            row["speedup_vs_bf16"] = round(row["decode_tok_s"] / (sum(p["decode_tok_s"] for p in base["prompts"].values()) / len(base["prompts"])), 2)
            fidelity = {}
            for name in PROMPTS:
                ours, theirs = record["logits"][name], base["logits"][name]
                same, prefix = agreement(base["prompts"][name]["tokens"], record["prompts"][name]["tokens"])
                fidelity[name] = {
                    "cosine": round(float(torch.nn.functional.cosine_similarity(ours, theirs, dim=0)), 4),
                    "top1_same": bool(ours.argmax() == theirs.argmax()),
                    "greedy_same_share": round(same, 3),
                    "greedy_common_prefix": prefix,
                }
            row["fidelity_vs_bf16"] = fidelity
        if "first_token" in record:
            row["first_token"] = record["first_token"]
        rows.append(row)
    from pandagpt_demo.config import LLAMA_SHAPES

    errors = matmul_errors(LLAMA_SHAPES[args.size])
    print(json.dumps(rows, indent=2))
    print(f"one projection's output, relative error against the float weight: {errors}")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "tokens": args.tokens, "rows": rows, "projection_error": errors}, indent=2) + "\n")


if __name__ == "__main__":
    main()
