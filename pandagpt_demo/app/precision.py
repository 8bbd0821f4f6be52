"""Choosing the model's precision on the CPU from the memory this machine (or container) has.

The largest precision that fits is taken, float32 > bfloat16 > int8 > int4 (model/footprint.py),
where fitting means: the weights, ImageBind without its text tower, the runtime and a KV cache for
each concurrent answer (`CpuMemoryPlan`) within the memory available now. A precision asked for by
flag is refused before loading when even its weights and the runtime cannot fit, with the ones that
would. Memory available is the least of the kernel's `MemAvailable` and the room left under this
process's cgroup limit (a Space's or a container's: `/proc/meminfo` shows the host's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pandagpt_demo.config import CpuMemoryPlan, ImageBindArch, LlamaShape
from pandagpt_demo.model.footprint import CPU_PRECISIONS, Precision, imagebind_bytes, kv_bytes_per_token, llm_bytes

UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


class DoesNotFit(SystemExit):
    """A precision (or every one) that cannot fit this machine's memory: the app stops before loading, saying what would fit."""


@dataclass(frozen=True)
class Needs:
    """One precision's memory: to load and run at all, and to serve its concurrent answers as well."""

    precision: Precision
    load: int  # weights + ImageBind + runtime
    serve: int  # + the KV cache of every concurrent answer


def needs_of(shape: LlamaShape, arch: ImageBindArch, max_batch: int, plan: CpuMemoryPlan | None = None) -> list[Needs]:
    """Each CPU precision's needs, largest precision first."""
    plan = plan or CpuMemoryPlan()
    listed = []
    for precision in CPU_PRECISIONS:
        load = llm_bytes(shape, precision) + imagebind_bytes(arch, precision) + int(plan.runtime_gb * 1e9)
        kv = kv_bytes_per_token(shape, precision) * plan.session_tokens * max(1, max_batch)
        listed.append(Needs(precision, load, load + kv))
    return listed


def choose(needs: list[Needs], available: int) -> tuple[Precision, str]:
    """The largest precision whose serving needs fit `available`, and a sentence saying why; DoesNotFit if none loads."""
    for need in needs:
        if need.serve <= available:
            return need.precision, f"{need.precision.label}: the largest that fits {gb(available)} available ({_table(needs)})"
    smallest = needs[-1]
    if smallest.load <= available:  # it loads, with less room for concurrent answers than planned
        return (
            smallest.precision,
            f"{smallest.precision.label}: fits {gb(available)} available, with less room than planned for many answers at once ({_table(needs)})",
        )
    raise DoesNotFit(
        f"This machine has {gb(available)} of memory available; even {smallest.precision.label} needs about {gb(smallest.load)} to load. "
        "Free memory, or run on a machine with more (or a GPU)."
    )


def require(needs: list[Needs], asked: Precision, available: int) -> None:
    """Refuse `asked` (DoesNotFit) if it cannot even load in `available`, naming the precisions that would."""
    need = next(n for n in needs if n.precision == asked)
    if need.load <= available:
        return
    fitting = [n.precision for n in needs if n.load <= available]
    advice = "; these would: " + ", ".join(_flag(p) for p in fitting) if fitting else "; nothing would: free memory or use a machine with more"
    raise DoesNotFit(f"{asked.label} needs about {gb(need.load)} of memory to load, and this machine has {gb(available)} available{advice}.")


def _flag(precision: Precision) -> str:
    return f"--quantize {precision.quantize}" if precision.quantize else f"--quantize none --dtype {precision.dtype}"


def _table(needs: list[Needs]) -> str:
    return ", ".join(f"{n.precision.label} needs {gb(n.serve)}" for n in needs)


def gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB"


def available_memory(proc: Path = Path("/proc"), cgroups: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process can still use: the least of MemAvailable and its cgroup's room; None where neither is readable."""
    candidates = [value for value in (_mem_available(proc / "meminfo"), _cgroup_room(proc / "self" / "cgroup", cgroups)) if value is not None]
    return min(candidates) if candidates else None


def _mem_available(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room(self_cgroup: Path, cgroups: Path) -> int | None:
    """The limit of this process's memory cgroup less what it uses that cannot be reclaimed (v2 or v1)."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        number, controllers, path = line.split(":", 2)
        if number == "0" and controllers == "":  # v2: memory.max, memory.current
            room = _room(cgroups / path.lstrip("/"), "memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):  # v1
            room = _room(cgroups / "memory" / path.lstrip("/"), "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        if room is not None:
            return room
    return None


def _room(folder: Path, limit_file: str, usage_file: str, reclaimable_key: str) -> int | None:
    try:
        limit_text = (folder / limit_file).read_text().strip()
        if limit_text == "max" or int(limit_text) >= UNLIMITED:
            return None
        usage = int((folder / usage_file).read_text())
        stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines() if line.count(" ") == 1)
        reclaimable = int(stat.get(reclaimable_key, 0))
    except (OSError, ValueError):
        return None
    return max(0, int(limit_text) - (usage - reclaimable))
