"""torch.library registration: ops trace under torch.compile and match eager results."""

from __future__ import annotations

import pytest
import torch

from pydecode.ops import _library, philox


def test_schema_gets_a_backend_argument() -> None:
    assert _library.DEFINED["philox_uniform"].endswith("str? backend=None) -> Tensor")


def test_library_op_runs_eagerly_with_backend_argument() -> None:
    seeds, offsets = torch.tensor([1, 2]), torch.tensor([3, 4])
    direct = torch.ops.pydecode.philox_uniform(seeds, offsets, 10, 0, backend="torch")
    assert torch.equal(direct, philox.philox_uniform(seeds, offsets, 10))


@pytest.mark.slow
def test_compiles_with_fullgraph() -> None:
    def step(seeds: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return philox.gumbel_from_uniform(philox.philox_uniform(seeds, offsets, 100))

    seeds, offsets = torch.tensor([1, 2]), torch.tensor([3, 4])
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(seeds, offsets), step(seeds, offsets))
    # New values, same graph: the draw follows the tensors, not constants baked at trace time.
    assert torch.equal(compiled(seeds + 1, offsets), step(seeds + 1, offsets))


def test_fake_tensor_shapes() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        out = torch.ops.pydecode.philox_uniform(
            torch.empty(3, dtype=torch.int64), torch.empty(3, dtype=torch.int64), 7, 0
        )
    assert out.shape == (3, 7) and out.dtype == torch.float32


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_public_sampling_op_compiles_with_fullgraph(backend: str) -> None:
    """torch.compile traces the public op's Python code (validation, dispatch) without a graph break:
    the backend choice is a trace-time constant, and tensor parameters follow the inputs."""
    from pydecode.ops import sampling

    x = torch.randn(4, 3000, generator=torch.Generator().manual_seed(0)) * 3
    seed, offset = torch.full((4,), 5, dtype=torch.int64), torch.zeros(4, dtype=torch.int64)

    def step(logits: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        return sampling.filter_and_sample(logits * 1.0, top_k=20, seed=seed, offset=offset, backend=backend).tokens

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x, offset), step(x, offset))
    assert torch.equal(compiled(x, offset + 1), step(x, offset + 1))
