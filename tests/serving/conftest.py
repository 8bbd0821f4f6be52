"""Serving tests compile with Inductor, the compiler the app uses on CUDA (here generating C++).

torch 2.9's C++ code generation for the padded batch step emits an index bounds check that uses a
variable it never declared (`tmp5 < ks2`: a compile error); the checks are debugging asserts on
indirect indexing, so they are turned off for these tests. On CUDA, Triton generates the code and
the app keeps Inductor's defaults.

`torch._dynamo.reset()` (which tests call between compiles) resets the CUDA graph trees of the
calling thread, which fails unless that thread has its own (compiled.py, `own_cuda_graph_trees`):
a decode thread of an earlier test may have been the first to import them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def inductor_builds_on_cpu() -> Iterator[None]:
    import torch._inductor.config

    from pandagpt_demo.serving.compiled import own_cuda_graph_trees

    own_cuda_graph_trees()
    with torch._inductor.config.patch(assert_indirect_indexing=False):
        yield
