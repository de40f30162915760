"""Triton kernels of pydecode (installed as ``pydecode.triton_kernels``; not a top-level
``triton_kernels``, a name triton itself and vLLM ship).

Importing this package registers each module's kernels as the ``triton`` backend of its op
in ``pydecode.ops``. The registry imports it lazily, on the first op that may use triton.
On CPU tensors the kernels run under the interpreter (``TRITON_INTERPRET=1``).
"""

from . import beam, philox, sampling

__all__ = ["beam", "philox", "sampling"]
from . import ngram  # noqa: E402,F401,I001  (triton-r: n-gram masks, sequence bias)
from . import penalties  # noqa: E402,F401,I001  (triton-r: penalty ops)
from . import watermark  # noqa: E402,F401,I001  (triton-r: watermark bias)

# Each op the triton backend implements is also a torch.library.triton_op (pydecode_triton::<op>,
# defined when torch.compile first needs it), which torch.compile traces through: its body runs the
# launcher with launches through wrap_triton (pydecode/ops/_library.py).
from pydecode.ops import _library as _lib  # noqa: E402,I001

from ._common import traceable_launches as _traceable  # noqa: E402,I001

_lib.set_traceable_launches(_traceable)
