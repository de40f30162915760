"""pydecode.ops: decoding ops on ``(batch, vocab)`` logits, usable in any PyTorch decode loop.

Every op validates its arguments, then runs on the backend selected by
:mod:`pydecode.ops._registry` (``cuda | triton | cpu | torch``; ``PYDECODE_BACKEND`` or
``backend=`` override). Each op is also ``torch.ops.pydecode.<name>`` for ``torch.compile``.
Per-row parameters may be Python scalars or ``(batch,)`` tensors.
"""

from . import beam, ngram, penalties, philox, sampling, watermark
from ._registry import (
    BACKENDS,
    BackendUnavailableError,
    backend_unavailable_reason,
    get_backend,
    registered_ops,
    resolve_name,
    set_backend,
)
from .beam import *  # noqa: F403
from .ngram import *  # noqa: F403
from .penalties import *  # noqa: F403
from .philox import philox4x32_10, philox_uniform
from .sampling import *  # noqa: F403
from .watermark import *  # noqa: F403

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "backend_unavailable_reason",
    "beam",
    "get_backend",
    "ngram",
    "penalties",
    "philox",
    "philox4x32_10",
    "philox_uniform",
    "registered_ops",
    "resolve_name",
    "sampling",
    "set_backend",
    "watermark",
]
for _module in (beam, ngram, penalties, sampling, watermark):
    __all__ += list(getattr(_module, "__all__", []))
