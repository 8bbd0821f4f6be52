"""A stand-in for Hugging Face's `spaces` package on a ZeroGPU Space, on CPU (the real one needs
their ZeroGPU service). It keeps the rules of the real package (read in spaces 0.51.3, `spaces/zero/`)
that an app can break, each marked below with the part it copies:

1. `torch/patching.py: patch`: importing enters a torch function mode on the importing thread
   only (torch's modes are thread-local). Under it, a tensor moved to "cuda" stays in host memory,
   recorded as on the GPU (its `.device` says cuda:0), and so is what is computed from it. CUDA's
   own initialisation is replaced by one that raises, so from any other thread `.to("cuda")`
   fails, and `torch.cuda.is_available()` says True on every thread.
2. `wrappers.py: generator_function_wrapper`: each call runs in a forked worker process, its
   arguments sent there and each value it yields sent back; what it changes stays in the worker.
   Both go through multiprocessing's `ForkingPickler` (`utils.py: SimpleQueue.put`), where torch's
   reducers (`torch.multiprocessing.reductions`, registered by `import torch`) move a host
   tensor's storage into shared memory, the sender's own tensor included: each such tensor then
   holds a file descriptor, in each process, for as long as it lives. An idle worker is reused by
   the next call of the same decorated function, so a worker holds the process's memory as it was
   when forked. Inside a call "cuda" works, on every thread of the worker (the real worker
   initialises CUDA for real and undoes the patching: here the mode is entered on the worker's
   thread and on each thread started in the worker, and mixing GPU and host tensors in one
   operation raises, as CUDA does). The caller closing the generator stops the task
   at its next value.
3. `torch.multiprocessing.reductions.rebuild_cuda_tensor`: a GPU tensor sent back cannot be
   read in the main process, because reading it initialises CUDA, which raises there. (The real
   call then hangs until its 20-minute timeout; here the read raises at once. Here a GPU tensor
   cannot be sent to a worker either, where the real package would send its empty host stand-in.)
4. `wrappers.py: exception_result`: an exception of the task comes back as a `gr.Error` naming only
   its class ("ZeroGPU worker error"), unless it is a `gr.Error`; that worker is not reused.
5. `wrappers.py: static_duration`: `duration(*args, **kwargs)` is asked first; the seconds count
   from the grant (`client.py: schedule` returning, after which `gradio_handler` hands the
   arguments to the worker and starts its own `warn_duration` clock), so they include a new
   worker's start, which moves the weights to the GPU (`wrappers.py: worker_init`, `torch.move`;
   $SPACES_STAND_IN_MOVE_S seconds here, default 0). A call still running when its seconds are up is
   ended with its worker ("GPU task aborted"), losing what it had left.
6. `zero/__init__.py: startup`: at `launch`, ZeroGPU is told the Space started only if some
   function was decorated by then.
7. `wrappers.py: generator_function_wrapper` (`request_var.get(None)`, `utils.py:
   gradio_request_var`) and `client.py: schedule` (`_get_headers`, `_get_token_and_payload`): a
   call is scheduled on the visitor's quota, by the `X-IP-Token` header of their Gradio request,
   which is read from `gradio.context.LocalContext.request` (a contextvar) when the call is first
   advanced. Advanced where that is unset (a thread of the app's own), the call has no token and is
   scheduled on the Space's anonymous quota; the record says which (`token`).

Only generator functions are supported: the app decorates nothing else. $SPACES_STAND_IN_LOG gets
one JSON line at launch (the names decorated by then) and one per call: the task's name, the seconds
asked for, the visitor's token it was scheduled with, the threads alive at its start, the worker's
pid, when it was granted (`time.monotonic()`), how it ended and how long after the grant.
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import multiprocessing
import os
import pickle
import threading
import time
import traceback
from multiprocessing.reduction import ForkingPickler

import gradio as gr
import torch
from gradio.context import LocalContext
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map_only
from torch.utils.weak import WeakTensorKeyDictionary

DEFAULT_S = 60  # what the real package asks for when told nothing
TOKEN_HEADER = "x-ip-token"  # `client.py: TOKEN_HEADER`, as `_get_token_and_payload` reads it
_CUDA = torch.device("cuda", 0)
_on_gpu = WeakTensorKeyDictionary()  # the tensors "on the GPU" (the real package's `cuda_aliases`)
_decorated: list[str] = []
_fork = multiprocessing.get_context("fork")


def _cuda_init_raises() -> None:
    raise RuntimeError("Low-level CUDA init (`torch._C._cuda_init`) reached: ZeroGPU's CUDA emulation did not intercept this CUDA operation.")


class _HostCuda(TorchFunctionMode):
    """Rule 1: "cuda" kept in host memory, recorded in `_on_gpu`, on the thread that entered it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func == torch._C._nn._parse_to:  # Module.to parses its arguments here: no tensor made
            return func(*args, **kwargs)
        if func == torch.Tensor.device.__get__:
            return _CUDA if args[0] in _on_gpu else func(*args)
        if func == torch.Tensor.data.__set__:  # Module.to keeps each Parameter, setting its data
            func(*args)
            _mark(args[0], args[1] in _on_gpu)
            return None
        if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu):
            return _move(func, args, kwargs)
        device = kwargs.get("device")
        if device is not None:  # a factory (torch.tensor, torch.zeros, ...) told where
            kwargs["device"] = "cpu" if torch.device(device).type == "cuda" else device
        on = _devices(func, args, kwargs)
        result = func(*args, **kwargs)
        if on == {True, False} and isinstance(result, torch.Tensor) and not (args and result is args[0]):  # not copy_ and the like
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu! ({func})")
        gpu = torch.device(device).type == "cuda" if device is not None else True in on  # told where, or where the inputs are
        if gpu:
            tree_map_only(torch.Tensor, lambda tensor: _mark(tensor, True), result)
        return result


def _move(func, args: tuple, kwargs: dict) -> torch.Tensor:
    """`.to`, `.cuda`, `.cpu`: to "cuda" a host copy marked as on the GPU; from it, an unmarked copy."""
    tensor = args[0]
    if func == torch.Tensor.to:
        copy = kwargs.pop("copy", False)
        device, dtype, _, memory_format = torch._C._nn._parse_to(*args[1:], **kwargs)
    else:
        copy, device, dtype, memory_format = False, torch.device("cuda" if func == torch.Tensor.cuda else "cpu"), None, kwargs.get("memory_format")
    crossing = device is not None and (device.type == "cuda") != (tensor in _on_gpu)
    if device is None or device.type not in ("cuda", "cpu"):
        moved = tensor.to(*args[1:], **kwargs, copy=copy)
    else:
        options = {"memory_format": memory_format} if memory_format is not None else {}
        moved = tensor.to("cpu", dtype or tensor.dtype, copy=copy or crossing, **options)
    return _mark(moved, device.type == "cuda" if device is not None else tensor in _on_gpu)


def _devices(func, args: tuple, kwargs: dict) -> set[bool]:
    """Whether each input is on the GPU (a 0-d host tensor counts for nothing: CUDA takes it beside GPU ones)."""
    tensors = [leaf for leaf in tree_flatten((args, kwargs))[0] if isinstance(leaf, torch.Tensor)]
    if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):  # the indexed tensor decides
        tensors = tensors[:1]
    return {tensor in _on_gpu for tensor in tensors if tensor in _on_gpu or tensor.dim() > 0}


def _mark(tensor: torch.Tensor, gpu: bool) -> torch.Tensor:
    if gpu:
        _on_gpu[tensor] = True
    elif tensor in _on_gpu:
        del _on_gpu[tensor]
    return tensor


class _HostGenerator(torch.Generator):
    """In a worker, `torch.Generator(device="cuda")` makes one in host memory, where "cuda" tensors are."""

    def __new__(cls, device: object = "cpu") -> torch.Generator:
        return torch._C.Generator("cpu" if torch.device(device).type == "cuda" else device)


def _enter_host_cuda() -> None:
    """Enter the mode on this thread, once (a worker forked from a thread that has it keeps it)."""
    if not getattr(_entered, "yes", False):
        _HostCuda().__enter__()
        _entered.yes = True


def _rebuild_gpu_tensor(shape: tuple[int, ...], dtype: str) -> torch.Tensor:
    """Rule 3: as torch's `rebuild_cuda_tensor`, reading a GPU tensor initialises CUDA first."""
    torch.cuda._lazy_init()
    raise AssertionError("unreachable: CUDA's initialisation raises outside a GPU call")


class _Pickler(ForkingPickler):
    """ForkingPickler, torch's reducers included (rule 2), with a GPU tensor written as a call that
    initialises CUDA when read (rule 3): `reducer_override` is asked before the reducers."""

    def reducer_override(self, obj: object) -> object:
        if isinstance(obj, torch.Tensor) and obj in _on_gpu:
            return _rebuild_gpu_tensor, (tuple(obj.shape), str(obj.dtype))
        return NotImplemented


def _dumps(value: object) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer).dump(value)
    return buffer.getvalue()


_entered = threading.local()
torch._C._cuda_init = _cuda_init_raises
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 1
_enter_host_cuda()


class _Worker:
    """Rule 2: a forked process running `task` for one call at a time, on pickled arguments."""

    def __init__(self, task) -> None:
        self.conn, child = _fork.Pipe()
        self.stop = _fork.Event()
        self.process = _fork.Process(target=_serve, args=(task, child, self.conn, self.stop), daemon=True)
        self.process.start()
        child.close()

    def end(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


def _serve(task, conn, parent_end, stop) -> None:
    """The worker's loop; it ends when the main process has gone (its pipe closes)."""
    parent_end.close()
    _enter_host_cuda()
    thread_run = threading.Thread.run

    def run_with_cuda(thread: threading.Thread) -> None:
        _enter_host_cuda()
        thread_run(thread)

    threading.Thread.run = run_with_cuda  # in the worker only: CUDA works on its every thread
    torch.Generator = _HostGenerator  # and a random generator can be made on it
    moved = False
    while True:
        try:
            sent = conn.recv_bytes()
        except EOFError:
            return
        stop.clear()
        if not moved:  # rule 5: a new worker's first call moves the weights first (`worker_init`)
            time.sleep(float(os.environ.get("SPACES_STAND_IN_MOVE_S", "0")))
            moved = True
        try:
            args, kwargs = pickle.loads(sent)
            values = task(*args, **kwargs)
            for value in values:
                if stop.is_set():
                    values.close()
                    break
                conn.send_bytes(_dumps(("value", _dumps(value))))
        except Exception as error:  # noqa: BLE001 - rule 4: handed back to the caller
            gradio_error = error if isinstance(error, gr.Error) else None
            conn.send_bytes(_dumps(("error", (type(error).__name__, traceback.format_exc(), gradio_error))))
        conn.send_bytes(_dumps(("end", None)))


def GPU(task=None, *, duration=None, size=None):  # noqa: N802 - the real package's name
    if task is None:
        return functools.partial(GPU, duration=duration, size=size)
    if not inspect.isgeneratorfunction(task):
        raise TypeError("the stand-in runs generator functions only")
    _decorated.append(task.__name__)
    idle: list[_Worker] = []
    lock = threading.Lock()

    def back_when_done(worker: _Worker) -> None:
        """The caller stopped early: the task stops at its next value; the worker is reused after."""
        worker.stop.set()
        while worker.conn.poll(None):
            if pickle.loads(worker.conn.recv_bytes())[0] in ("end", "error"):
                with lock:
                    idle.append(worker)
                return

    @functools.wraps(task)
    def handler(*args, **kwargs):
        token = _token(LocalContext.request.get(None))  # rule 7: read where the call is first advanced
        seconds = duration(*args, **kwargs) if callable(duration) else duration or DEFAULT_S
        granted = time.monotonic()  # rule 5: scheduled (no queue here), so the seconds count from now
        worker = None
        with lock:
            while idle and worker is None:
                worker = idle.pop()
                worker = worker if worker.process.is_alive() else None
        worker = worker or _Worker(task)
        record = {"task": task.__name__, "duration": seconds, "token": token, "threads": [t.name for t in threading.enumerate()]}
        record |= {"worker": worker.process.pid, "granted": granted}
        worker.conn.send_bytes(_dumps((args, kwargs)))  # after the grant and the worker, as `arg_queue.put`
        keep = False
        try:
            while True:
                if not worker.conn.poll(max(granted + seconds - time.monotonic(), 0.0)):
                    record["ended"] = "aborted"
                    raise gr.Error("GPU task aborted", title="ZeroGPU worker error", print_exception=False)
                kind, value = pickle.loads(worker.conn.recv_bytes())
                if kind == "end":
                    record["ended"], keep = "completed", True
                    return
                if kind == "error":
                    name, trace, gradio_error = value
                    record["ended"] = "raised"
                    if gradio_error is not None:
                        raise gradio_error
                    print(trace, flush=True)
                    raise gr.Error(name, title="ZeroGPU worker error", print_exception=False)
                record["ended"] = "unreadable"
                result = pickle.loads(value)
                record["ended"] = "stopped"
                yield result
        finally:
            record["elapsed"] = time.monotonic() - granted
            if keep:
                with lock:
                    idle.append(worker)
            elif record["ended"] == "stopped":
                threading.Thread(target=back_when_done, args=(worker,), daemon=True).start()
            else:
                worker.end()
            _log(record)

    return handler


def _token(request: gr.Request | None) -> str | None:
    """Rule 7: the visitor's token in `request`'s headers (`client.py: _get_headers`,
    `_get_token_and_payload`); None without a request, as for an anonymous visitor."""
    if request is None:
        return None
    headers = request.headers
    return (headers if hasattr(headers, "get") else headers.__dict__).get(TOKEN_HEADER)


def _log(record: dict) -> None:
    with open(os.environ["SPACES_STAND_IN_LOG"], "a") as log:
        log.write(json.dumps(record) + "\n")


_launch = gr.Blocks.launch


@functools.wraps(_launch)
def _launch_once(*args, **kwargs):
    """Rule 6: what ZeroGPU would hear at launch (the real `one_launch(startup)`)."""
    _log({"launched": True, "decorated": list(_decorated)})
    gr.Blocks.launch = _launch
    return _launch(*args, **kwargs)


gr.Blocks.launch = _launch_once
