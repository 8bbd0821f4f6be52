"""Serving tests compile with Inductor, the compiler the app uses on CUDA (here generating C++).

torch 2.9's C++ code generation for the padded batch step emits an index bounds check that uses a
variable it never declared (`tmp5 < ks2`: a compile error); the checks are debugging asserts on
indirect indexing, so they are turned off for these tests. On CUDA, Triton generates the code and
the app keeps Inductor's defaults.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def inductor_builds_on_cpu() -> Iterator[None]:
    import torch._inductor.config

    with torch._inductor.config.patch(assert_indirect_indexing=False):
        yield
