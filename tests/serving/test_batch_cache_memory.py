"""Rebuilding the batch's KV cache (a row joins, rows leave, it is full) never holds a third copy of
it: the new cache is written one layer at a time, so beside the old cache there is the new one and
at most one layer's worth of intermediate rows."""

from __future__ import annotations

import gc

import torch
from transformers import LlamaConfig

from pandagpt_demo.serving.batch_cache import BatchCache, CacheLayout
from tests.memory_peak import PeakNewBytes

LAYERS, HEADS, DIM = 16, 4, 16
CONFIG = LlamaConfig(
    num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS, hidden_size=HEADS * DIM, max_position_embeddings=512
)
LAYOUT = CacheLayout.for_model(CONFIG, spare=8, device=torch.device("cpu"))


def kv(rows: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.randn(rows, HEADS, length, DIM), torch.randn(rows, HEADS, length, DIM)) for _ in range(LAYERS)]


def cache_bytes(cache: BatchCache) -> int:
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.cache.layers)


def peak_of(rebuild) -> tuple[int, BatchCache]:
    gc.collect()
    with PeakNewBytes() as counter:
        result = rebuild()
    return counter.peak, result


def test_a_join_holds_the_new_cache_and_one_layer_more_at_most() -> None:
    batch = BatchCache.of(LAYOUT, kv(1, 100)).joined(kv(1, 60)).joined(kv(1, 130))
    newcomer = kv(1, 90)
    peak, joined = peak_of(lambda: batch.joined(newcomer))
    assert joined.pads == [30, 70, 0, 40] and joined.length == 130
    assert peak <= cache_bytes(joined) * (1 + 1.5 / LAYERS), (peak, cache_bytes(joined))


def test_rows_leaving_or_a_full_cache_hold_the_new_cache_and_one_layer_more_at_most() -> None:
    batch = BatchCache.of(LAYOUT, kv(1, 100)).joined(kv(1, 60)).joined(kv(1, 130)).joined(kv(1, 90))
    peak, kept = peak_of(lambda: batch.kept([1, 3]))
    assert kept.pads == [30, 0] and kept.length == 90
    assert peak <= cache_bytes(kept) * (1 + 1.5 / LAYERS), (peak, cache_bytes(kept))

    for _ in range(kept.capacity - kept.length):  # fill the spare room; the next step rebuilds larger
        kept.next_step()
        kept.advance()
    peak, _ = peak_of(kept.next_step)
    assert kept.capacity == kept.length + LAYOUT.spare
    assert peak <= cache_bytes(kept) * 1.1, (peak, cache_bytes(kept))


def test_kept_rows_are_the_rows_they_were() -> None:
    rows = [kv(1, n) for n in (100, 60, 130)]
    batch = BatchCache.of(LAYOUT, rows[0]).joined(rows[1]).joined(rows[2])
    kept = batch.kept([1, 2])
    for layer, (row1, row2) in zip(kept.kv(), zip(rows[1], rows[2])):
        keys = layer[0]
        assert torch.equal(keys[0, :, kept.pads[0] :], row1[0][0]) and torch.equal(keys[1, :, kept.pads[1] :], row2[0][0])
