"""Stopping criteria, compatible with transformers 5.x (``transformers.generation.stopping_criteria``).

What is here:

* HF-named criteria with the same constructor arguments, attributes and ``__call__`` contract
  (``(input_ids, scores, **kwargs) -> BoolTensor (batch,)``): :class:`MaxLengthCriteria`,
  :class:`MaxTimeCriteria`, :class:`EosTokenCriteria`, :class:`StopStringCriteria`,
  :class:`ConfidenceCriteria`, and :class:`StoppingCriteriaList`. transformers' own classes
  (and any callable with that contract) are accepted wherever a criterion is.
* :func:`build_stopping_criteria`: the list transformers' ``GenerationMixin._get_stopping_criteria``
  builds (same classes by name, same order, same merge rule for user criteria).
* :func:`eos_hit` and :class:`StoppingPlan`, the scheduler's form: the plan classifies the list
  once per generate call, so that per step the max length is an integer comparison on the host,
  the time limit a clock read, and EOS a device-side ``isin`` (no host sync); only criteria it
  does not know (user classes, stop strings) are called as transformers calls them.

transformers is imported lazily, only to recognise its classes and to build stop-string tables.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Callable, Optional, Union

import torch

logger = logging.getLogger("pydecode.generation.stopping")

__all__ = [
    "ConfidenceCriteria",
    "EosTokenCriteria",
    "MaxLengthCriteria",
    "MaxTimeCriteria",
    "StopStringCriteria",
    "StoppingCriteria",
    "StoppingCriteriaList",
    "StoppingPlan",
    "build_stopping_criteria",
    "eos_hit",
    "validate_stopping_criteria",
]

EosLike = Union[int, Sequence[int], torch.Tensor]
# transformers passes the per-step scores tuple, or None when the caller keeps no scores.
Scores = Optional[tuple[torch.Tensor, ...]]

_warned_messages: set[str] = set()


def _warning_once(message: str) -> None:
    # transformers' logger.warning_once: one warning per distinct message per process.
    if message not in _warned_messages:
        _warned_messages.add(message)
        logger.warning(message)


def _as_eos_tensor(eos_token_id: EosLike, name: str = "eos_token_id") -> torch.Tensor:
    """1-D int64 tensor of EOS ids; ``TypeError``/``ValueError`` for anything else."""
    if isinstance(eos_token_id, torch.Tensor):
        if eos_token_id.is_floating_point() or eos_token_id.is_complex() or eos_token_id.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer token ids, got a {eos_token_id.dtype} tensor")
        if eos_token_id.dim() > 1:
            raise ValueError(f"{name} must be an int, a list of ints or a 1-D tensor, got shape "
                             f"{tuple(eos_token_id.shape)}")
        return eos_token_id.reshape(-1)
    if isinstance(eos_token_id, bool):
        raise TypeError(f"{name} must be an int, a list of ints or a 1-D tensor, got a bool")
    if isinstance(eos_token_id, int):
        return torch.tensor([eos_token_id], dtype=torch.int64)
    if isinstance(eos_token_id, (list, tuple)):
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in eos_token_id):
            raise TypeError(f"{name} must be an int, a list of ints or a 1-D tensor, got {eos_token_id!r}")
        return torch.tensor(list(eos_token_id), dtype=torch.int64)
    raise TypeError(f"{name} must be an int, a list of ints or a 1-D tensor, got {type(eos_token_id).__name__}")


def eos_hit(new_tokens: torch.Tensor, eos_token_ids: Optional[torch.Tensor]) -> torch.Tensor:
    """Which rows produced an EOS token, without a host sync.

    Args:
        new_tokens: ``(B,)`` or ``(B, n)`` integer tensor of the newest token(s) per row.
        eos_token_ids: 1-D integer tensor of EOS ids on the same device (or ``None``: nothing hits).

    Returns:
        ``(B,)`` bool tensor on ``new_tokens``' device: ``True`` where any of the tokens is an EOS id
        (``EosTokenCriteria(eos)(input_ids, None, new_token_length=n)`` for the last ``n`` ids).
    """
    if new_tokens.dim() == 1:
        new_tokens = new_tokens[:, None]
    if eos_token_ids is None or eos_token_ids.numel() == 0:
        return torch.zeros(new_tokens.shape[0], dtype=torch.bool, device=new_tokens.device)
    return torch.isin(new_tokens, eos_token_ids).any(dim=-1)


class StoppingCriteria:
    """Base class of pydecode's criteria: ``__call__(input_ids, scores, **kwargs) -> BoolTensor (B,)``.

    ``input_ids`` is ``(B, L)`` int64 (prompt + generated tokens); ``scores`` is a tuple of
    ``(B, V)`` float tensors (one per step) or ``None``. ``True`` means "stop this row".
    """

    def __call__(self, input_ids: torch.Tensor, scores: Scores, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError("StoppingCriteria needs to be subclassed")


class MaxLengthCriteria(StoppingCriteria):
    """Stop when ``input_ids.shape[1] >= max_length`` (prompt included for decoder-only models).

    ``max_position_embeddings`` (the model's) only triggers transformers' one-time warning when the
    sequence grows past it.
    """

    def __init__(self, max_length: int, max_position_embeddings: Optional[int] = None):
        self.max_length = max_length
        self.max_position_embeddings = max_position_embeddings

    def warn_if_past_positions(self, cur_len: int) -> None:
        if self.max_position_embeddings is not None and cur_len < self.max_length and (
            cur_len > self.max_position_embeddings
        ):
            _warning_once(
                "This is a friendly reminder - the current text generation call has exceeded the model's predefined "
                f"maximum length ({self.max_position_embeddings}). Depending on the model, you may observe "
                "exceptions, performance degradation, or nothing at all."
            )

    def __call__(self, input_ids: torch.Tensor, scores: Scores, **kwargs: Any) -> torch.Tensor:
        cur_len = input_ids.shape[1]
        self.warn_if_past_positions(cur_len)
        return torch.full((input_ids.shape[0],), cur_len >= self.max_length, device=input_ids.device, dtype=torch.bool)


class MaxTimeCriteria(StoppingCriteria):
    """Stop every row once ``time.time() - initial_timestamp > max_time`` (seconds).

    ``initial_timestamp`` defaults to the construction time, as in transformers.
    """

    def __init__(self, max_time: float, initial_timestamp: Optional[float] = None):
        self.max_time = max_time
        self.initial_timestamp = time.time() if initial_timestamp is None else initial_timestamp

    def expired(self) -> bool:
        return time.time() - self.initial_timestamp > self.max_time

    def __call__(self, input_ids: torch.Tensor, scores: Scores, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.expired(), device=input_ids.device, dtype=torch.bool)


class EosTokenCriteria(StoppingCriteria):
    """Stop a row when one of its last ``new_token_length`` tokens (kwarg, default 1) is an EOS id.

    ``eos_token_id``: an int, a list of ints or a 1-D integer tensor (several EOS ids allowed).
    """

    def __init__(self, eos_token_id: EosLike):
        self.eos_token_id = _as_eos_tensor(eos_token_id)

    def __call__(
        self,
        input_ids: torch.Tensor,
        scores: Scores,
        new_token_length: int = 1,
        **kwargs: Any,
    ) -> torch.Tensor:
        if self.eos_token_id.device != input_ids.device:
            self.eos_token_id = self.eos_token_id.to(input_ids.device)
        return eos_hit(input_ids[:, -new_token_length:], self.eos_token_id)


class ConfidenceCriteria(StoppingCriteria):
    """Assistant-only: stop drafting when the assistant's probability of its last token (row 0) is
    below ``assistant_confidence_threshold``. Returns a Python bool, like transformers' class."""

    def __init__(self, assistant_confidence_threshold: float):
        self.assistant_confidence_threshold = assistant_confidence_threshold

    def __call__(self, input_ids: torch.Tensor, scores: Scores, **kwargs: Any) -> bool:
        if not scores:
            raise ValueError("ConfidenceCriteria needs the assistant's scores (output_scores=True)")
        probs = scores[-1].softmax(-1)
        return bool(probs[0, input_ids[0, -1]].item() < self.assistant_confidence_threshold)


class StopStringCriteria(StoppingCriteria):
    """Stop a row when its text ends with one of ``stop_strings`` (str or list of str), where the
    string must overlap the last token: transformers' ``StopStringCriteria`` semantics exactly
    (token-boundary overhangs on both ends match; a stop string wholly inside earlier tokens does not).

    The matching runs as transformers' implementation (wrapped, so the token-string tables, byte-level
    and byte-fallback vocabularies and its cache are identical); it is pure tensor work (no host sync).
    Needs transformers (the tokenizer is a transformers tokenizer anyway).
    """

    def __init__(self, tokenizer: Any, stop_strings: Union[str, Sequence[str]]):
        if isinstance(stop_strings, str):
            stop_strings = [stop_strings]
        if not isinstance(stop_strings, (list, tuple)) or not stop_strings or not all(
            isinstance(s, str) and s for s in stop_strings
        ):
            raise ValueError(f"stop_strings must be a non-empty string or a non-empty list of non-empty strings, "
                             f"got {stop_strings!r}")
        if tokenizer is None:
            raise ValueError("StopStringCriteria needs the model's tokenizer (got tokenizer=None)")
        try:
            from transformers.generation.stopping_criteria import StopStringCriteria as _HFStopStringCriteria
        except ImportError as exc:  # pragma: no cover - transformers is a dependency of the [hf] extra
            raise ImportError(
                "stop strings need transformers (pip install 'pydecode[hf]'): the tokenizer vocabulary is cleaned "
                "and matched with transformers' StopStringCriteria tables"
            ) from exc
        self._impl = _HFStopStringCriteria(tokenizer=tokenizer, stop_strings=list(stop_strings))
        self.stop_strings: tuple[str, ...] = tuple(stop_strings)

    @property
    def maximum_token_len(self) -> int:
        return self._impl.maximum_token_len

    def __call__(self, input_ids: torch.Tensor, scores: Scores, **kwargs: Any) -> torch.Tensor:
        return self._impl(input_ids, scores, **kwargs)


class StoppingCriteriaList(list):
    """A list of criteria (pydecode's, transformers' or any callable with their contract); calling it
    ORs them: ``(B,)`` bool, ``True`` = stop the row."""

    def __call__(self, input_ids: torch.Tensor, scores: Scores, **kwargs: Any) -> torch.Tensor:
        is_done = torch.full((input_ids.shape[0],), False, device=input_ids.device, dtype=torch.bool)
        for criteria in self:
            is_done = is_done | criteria(input_ids, scores, **kwargs)
        return is_done

    @property
    def max_length(self) -> Optional[int]:
        for criteria in self:
            if _kind(criteria) == "MaxLengthCriteria":
                return criteria.max_length
        return None


def validate_stopping_criteria(stopping_criteria: StoppingCriteriaList, max_length: int) -> StoppingCriteriaList:
    """transformers' ``validate_stopping_criteria``: a deep copy with a max-length criterion
    (warns when the list already has a different one)."""
    stopping_max_length = StoppingCriteriaList(stopping_criteria).max_length
    new_stopping_criteria = StoppingCriteriaList(copy.deepcopy(list(stopping_criteria)))
    if stopping_max_length is not None and stopping_max_length != max_length:
        warnings.warn("You set different `max_length` for stopping criteria and `max_length` parameter", UserWarning,
                      stacklevel=2)
    elif stopping_max_length is None:
        new_stopping_criteria.append(MaxLengthCriteria(max_length=max_length))
    return new_stopping_criteria


# --------------------------------------------------------------------------- class identity
_KNOWN = ("MaxLengthCriteria", "MaxTimeCriteria", "EosTokenCriteria", "StopStringCriteria", "ConfidenceCriteria")
_OURS = {
    "MaxLengthCriteria": MaxLengthCriteria,
    "MaxTimeCriteria": MaxTimeCriteria,
    "EosTokenCriteria": EosTokenCriteria,
    "StopStringCriteria": StopStringCriteria,
    "ConfidenceCriteria": ConfidenceCriteria,
}


def _transformers_classes() -> dict[str, type]:
    try:
        from transformers.generation import stopping_criteria as hf
    except ImportError:  # pragma: no cover - transformers is optional
        return {}
    return {name: getattr(hf, name) for name in _KNOWN if hasattr(hf, name)}


def _kind(criteria: Any) -> Optional[str]:
    """The HF class name when ``criteria`` is exactly pydecode's or transformers' class of that name.

    Exact types only: a subclass may override ``__call__``, so it is treated as a user criterion.
    """
    cls = type(criteria)
    name = cls.__name__
    if name not in _KNOWN:
        return None
    if cls is _OURS[name] or cls is _transformers_classes().get(name):
        return name
    return None


def _same_type(custom: Any, default: Any) -> bool:
    # transformers merges by `type(custom) is type(default)`; pydecode's defaults stand in for
    # transformers' classes of the same name, so a user's transformers class replaces ours.
    if type(custom) is type(default):
        return True
    kind = _kind(custom)
    return kind is not None and kind == _kind(default)


def merge_criteria_lists(default_list: list, custom_list: Optional[Iterable]) -> list:
    """transformers' ``_merge_criteria_processor_list``: a custom entry of the same type as a default
    one takes its place (with transformers' one-time warning); other custom entries follow, in order."""
    if custom_list is None:
        return default_list
    custom_list = list(custom_list)
    if len(custom_list) == 0:
        return default_list
    final_list = type(default_list)()
    for default in default_list:
        replacement = next((custom for custom in custom_list if _same_type(custom, default)), None)
        if replacement is not None:
            object_type = "stopping criteria" if _is_criteria(replacement) else "logits processor"
            _warning_once(
                f"A custom {object_type} of type {type(replacement)} has been passed to `.generate()`, but it "
                f"was also created in `.generate()`, given its parameterization. The custom {type(replacement)} "
                f"will take precedence. Please check the docstring of {type(replacement)} to see related "
                "`.generate()` flags."
            )
            final_list.append(replacement)
        else:
            final_list.append(default)
    for custom in custom_list:
        if custom not in final_list:
            final_list.append(custom)
    return final_list


def _is_criteria(obj: Any) -> bool:
    if isinstance(obj, StoppingCriteria):
        return True
    try:
        from transformers.generation.stopping_criteria import StoppingCriteria as HFStoppingCriteria
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, HFStoppingCriteria)


def build_stopping_criteria(
    generation_config: Any,
    stopping_criteria: Optional[Iterable[Callable]] = None,
    tokenizer: Any = None,
    *,
    max_position_embeddings: Optional[int] = None,
    eos_token_tensor: Optional[torch.Tensor] = None,
) -> StoppingCriteriaList:
    """The criteria list transformers' ``GenerationMixin._get_stopping_criteria`` builds (5.24).

    Order: ``MaxLengthCriteria(max_length, max_position_embeddings)`` if ``max_length`` is set,
    ``MaxTimeCriteria`` if ``max_time``, ``StopStringCriteria`` if ``stop_strings`` (needs
    ``tokenizer``: ``ValueError`` otherwise, transformers' message), ``EosTokenCriteria`` if there
    are EOS ids, ``ConfidenceCriteria`` for an assistant config (``is_assistant`` and
    ``assistant_confidence_threshold > 0``); then the user's ``stopping_criteria`` merged in
    (same type replaces the built-in, which includes transformers' class of the same name).

    Args:
        generation_config: pydecode's or transformers' ``GenerationConfig`` (final, after kwargs).
        stopping_criteria: user criteria (any iterable; transformers' list works).
        tokenizer: needed for ``stop_strings``.
        max_position_embeddings: the model config's value (only for the length warning).
        eos_token_tensor: the prepared EOS ids (transformers' ``_eos_token_tensor``); defaults to
            ``generation_config._eos_token_tensor`` when set, else ``generation_config.eos_token_id``.
    """
    criteria = StoppingCriteriaList()
    max_length = getattr(generation_config, "max_length", None)
    if max_length is not None:
        criteria.append(MaxLengthCriteria(max_length=max_length, max_position_embeddings=max_position_embeddings))
    max_time = getattr(generation_config, "max_time", None)
    if max_time is not None:
        criteria.append(MaxTimeCriteria(max_time=max_time))
    stop_strings = getattr(generation_config, "stop_strings", None)
    if stop_strings is not None:
        if tokenizer is None:
            raise ValueError(
                "There are one or more stop strings, either in the arguments to `generate` or in the "
                "model's generation config, but we could not locate a tokenizer. When generating with "
                "stop strings, you must pass the model's tokenizer to the `tokenizer` argument of `generate`."
            )
        criteria.append(StopStringCriteria(stop_strings=stop_strings, tokenizer=tokenizer))
    if eos_token_tensor is None:
        eos_token_tensor = getattr(generation_config, "_eos_token_tensor", None)
    if eos_token_tensor is None and getattr(generation_config, "eos_token_id", None) is not None:
        eos_token_tensor = _as_eos_tensor(generation_config.eos_token_id)
    if eos_token_tensor is not None:
        criteria.append(EosTokenCriteria(eos_token_id=eos_token_tensor))
    threshold = getattr(generation_config, "assistant_confidence_threshold", None)
    if getattr(generation_config, "is_assistant", False) and threshold is not None and threshold > 0:
        criteria.append(ConfidenceCriteria(assistant_confidence_threshold=threshold))
    return merge_criteria_lists(criteria, stopping_criteria)


class StoppingPlan:
    """A criteria list classified once per generate call, for the scheduler.

    * exact ``MaxLengthCriteria`` (pydecode's or transformers'): ``max_length``, compared on the host
      against the sequence length the scheduler already knows;
    * exact ``MaxTimeCriteria``: a host clock read, no device work;
    * exact ``EosTokenCriteria``: their ids, checked with :func:`eos_hit` on the device;
    * everything else (stop strings, user criteria): called with transformers' arguments.

    ``plan(input_ids, scores, **kwargs)`` equals ``criteria(input_ids, scores, **kwargs)``; it reads
    nothing back to the host unless an unknown criterion does.
    """

    def __init__(self, criteria: Optional[Iterable[Callable]]):
        self.criteria = StoppingCriteriaList(criteria or [])
        self.max_length: Optional[int] = None
        self._length_criteria: list = []
        self._time_criteria: list = []
        eos: list[torch.Tensor] = []
        self.other = StoppingCriteriaList()
        for c in self.criteria:
            kind = _kind(c)
            if kind == "MaxLengthCriteria":
                self._length_criteria.append(c)
                self.max_length = c.max_length if self.max_length is None else min(self.max_length, c.max_length)
            elif kind == "MaxTimeCriteria":
                self._time_criteria.append(c)
            elif kind == "EosTokenCriteria":
                eos.append(_as_eos_tensor(c.eos_token_id).to(torch.int64).cpu())
            else:
                self.other.append(c)
        self.eos_token_ids: Optional[torch.Tensor] = torch.cat(eos) if eos else None
        self._eos_on: dict[torch.device, torch.Tensor] = {}

    def eos_ids_on(self, device: torch.device) -> Optional[torch.Tensor]:
        if self.eos_token_ids is None:
            return None
        ids = self._eos_on.get(device)
        if ids is None:
            ids = self._eos_on[device] = self.eos_token_ids.to(device)
        return ids

    def host_done(self, cur_len: int) -> bool:
        """``True`` when the length or time limit stops every row (no device work)."""
        for c in self._length_criteria:
            if hasattr(c, "warn_if_past_positions"):
                c.warn_if_past_positions(cur_len)
        if self.max_length is not None and cur_len >= self.max_length:
            return True
        return any(_time_expired(c) for c in self._time_criteria)

    def __call__(self, input_ids: torch.Tensor, scores: Scores, **kwargs: Any) -> torch.Tensor:
        batch = input_ids.shape[0]
        if self.host_done(input_ids.shape[1]):
            return torch.ones(batch, dtype=torch.bool, device=input_ids.device)
        new_token_length = kwargs.get("new_token_length", 1)
        done = eos_hit(input_ids[:, -new_token_length:], self.eos_ids_on(input_ids.device))
        if self.other:
            done = done | self.other(input_ids, scores, **kwargs)
        return done


def _time_expired(criteria: Any) -> bool:
    return time.time() - criteria.initial_timestamp > criteria.max_time
