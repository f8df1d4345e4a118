"""Text generation for the HRM and the transformer baseline, on the KV cache.

`generate` turns prompts into continuations for Pass@k evaluation; `generate_ids` does the same on token
ids; `generate_hf` wraps a Hugging Face causal LM's own `generate` with the same return shape, so the
evaluator treats every model alike.

How a batch is decoded:

- Prompts are sorted by length (less padding), left-padded, and prefilled once; the prefilled cache is
  expanded to the `num_samples` rows of each prompt with `cache.index_select`, so a prompt is never
  prefilled twice, even when its samples are split over several decode batches.
- The attention mask follows the HF convention (`[B, past + S]`, one column added per step) and position
  ids are `cumsum(mask) - 1`, so a left-padded row sees the same positions as the prompt alone.
- A row stops at EOS (not included in the output), when a stop string appears in its text (checked on
  the newly decoded tail only), or after `max_new_tokens`; finished rows stay in the batch (their
  output ignored) until more than half of it is done, then the cache is compacted once.
- One host-device synchronisation per step (the chosen tokens, which the host needs for EOS and
  stop strings); padding is known on the host, NaN rides along with the tokens.
- `compile=True`: fixed-shape one-token steps on a static cache through `torch.compile`.
- `draft=SpeculativeDraft(...)`: speculative decoding (greedy, a prompt at a time), see
  `hrm_codegen.inference.speculative`; other backends (ONNX Runtime) in `hrm_codegen.inference`.
- Sampling is reproducible per row: sample `j` of a prompt draws from its own `torch.Generator`, seeded
  from (`seed`, the prompt's token ids, `j`). The same prompt therefore gives the same samples whatever
  batch, position or `batch_size` it is generated with.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from hrm_codegen.inference.speculative import SpeculativeDraft

# --------------------------------------------------------------------------------------------------
# Next-token choice


def filter_logits(logits: torch.Tensor, *, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Return float32 logits with every token outside the top-k / nucleus (top-p) set at -inf.

    Top-p keeps the smallest set of most likely tokens whose probability reaches `top_p` (the most likely
    token is always kept). Ties at the top-k boundary are all kept.
    """
    logits = logits.float()
    vocab = logits.shape[-1]
    if top_k > 0 and top_k < vocab:
        kth_largest = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p < 1.0:
        sorted_logits, sorted_index = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = mass_before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, sorted_index, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token_probs(
    logits: torch.Tensor, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """Sampling distribution [B, V] (float32): temperature, then top-k / top-p; removed tokens are 0."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to sample, got {temperature}; use 0 for greedy")
    return torch.softmax(
        filter_logits(logits.float() / temperature, top_k=top_k, top_p=top_p), dim=-1
    )


def sample_from_probs(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: row b takes the token whose CDF interval contains `uniforms[b]` in [0, 1).

    One uniform per row lets every row draw from its own generator. A token with probability 0 has an
    empty interval, so it is never chosen; rounding at the top end falls back on the last token with
    positive probability rather than running past the vocabulary.
    """
    probs = probs.double()
    cdf = torch.cumsum(probs, dim=-1)
    targets = uniforms.to(device=probs.device, dtype=torch.float64).unsqueeze(-1) * cdf[..., -1:]
    chosen = torch.searchsorted(cdf, targets, right=True).squeeze(-1)
    positions = torch.arange(probs.shape[-1], device=probs.device)
    last_positive = torch.where(probs > 0, positions, -1).amax(dim=-1)
    return torch.minimum(chosen, last_positive)


# --------------------------------------------------------------------------------------------------
# Stop strings


def truncate_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut `text` at the earliest occurrence of any stop string (the stop string is removed too)."""
    cut = len(text)
    for s in stop or ():
        found = text.find(s)
        if found != -1:
            cut = min(cut, found)
    return text[:cut]


_DECODE_KWARGS = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}


class StopStringWatcher:
    """Says when a stop string appears in a growing token sequence, decoding only its new tail.

    Decoding a token alone can split a multi-byte character, so new text is read the way streaming
    servers do: decode from a prefix offset a few tokens back, and only accept text once it does not end
    in an incomplete character. The last `len(longest stop) - 1` characters are kept so that a stop string
    split across two steps is still found.
    """

    def __init__(self, tokenizer, stop: Sequence[str]):
        stop = list(stop)
        if not stop or any(not isinstance(s, str) or s == "" for s in stop):
            raise ValueError(f"stop strings must be non-empty strings, got {stop!r}")
        self.tokenizer = tokenizer
        self.stop = stop
        self.keep = max(len(s) for s in stop) - 1
        self.prefix_offset = 0
        self.read_offset = 0
        self.tail = ""

    def update(self, tokens: Sequence[int]) -> bool:
        """Read the text added by the last tokens; True when a stop string is now in the text."""
        decode = self.tokenizer.decode
        prefix_text = decode(tokens[self.prefix_offset : self.read_offset], **_DECODE_KWARGS)
        text = decode(tokens[self.prefix_offset :], **_DECODE_KWARGS)
        if len(text) <= len(prefix_text) or text.endswith("\ufffd"):
            return False  # nothing new, or a character still incomplete: wait for the next token
        window = self.tail + text[len(prefix_text) :]
        self.prefix_offset, self.read_offset = self.read_offset, len(tokens)
        self.tail = window[len(window) - self.keep :] if self.keep else ""
        return any(s in window for s in self.stop)


# --------------------------------------------------------------------------------------------------
# Decoding loop


# `on_token(prompt_index, sample_index, token_id)`: a streaming hook, called as tokens are chosen.
TokenCallback = Callable[[int, int, int], None]

# `on_progress(units)`: how much decoding work was just done, for progress bars. Every sample is
# worth `max_new_tokens` units: one as each of its tokens is chosen, the rest when it ends early
# (EOS, a stop string, the model's max_seq_len), so a call's units always add up to
# prompts x num_samples x max_new_tokens, and a bar over them moves per token and ends full.
ProgressCallback = Callable[[int], None]

_PROGRESS_HOOK: ContextVar[ProgressCallback | None] = ContextVar(
    "generation_progress", default=None
)


@contextmanager
def progress_hook(callback: ProgressCallback) -> Iterator[None]:
    """Report the progress of every `generate_ids` / `generate` / `generate_hf` call inside the
    block to `callback` (units as `ProgressCallback`), on top of their own `progress` bar.

    For callers that reach generation through layers that only pass `progress: bool` (the
    trainer's pass@1 goes through `evaluate_model`) and want their own bar, e.g. one nested under
    the training bar. Decoding itself is unchanged.
    """
    token = _PROGRESS_HOOK.set(callback)
    try:
        yield
    finally:
        _PROGRESS_HOOK.reset(token)


class _Progress:
    """A generate call's own bar (`progress`) and the `progress_hook` callback, advanced together.

    `report(units)` counts `units` x `copies` (a greedy row stands for every sample of its
    prompt); it is None when nobody listens, so decoding does no bookkeeping then.
    """

    def __init__(self, total_samples: int, max_new_tokens: int, copies: int, progress: bool):
        self.hook = _PROGRESS_HOOK.get()
        self.copies, self.total_samples = copies, total_samples
        self.bar = tqdm(
            total=total_samples * max_new_tokens, desc="generate", unit="tok", disable=not progress
        )
        self.report = self._report if (progress or self.hook is not None) else None

    def _report(self, units: int) -> None:
        self.bar.update(units * self.copies)
        if self.hook is not None:
            self.hook(units * self.copies)

    def samples_done(self, count: int) -> None:
        self.bar.set_postfix_str(f"{count}/{self.total_samples} samples")

    def close(self) -> None:
        self.bar.close()


def _derived_seed(seed: int, key: Sequence[int], index: int) -> int:
    """A 63-bit seed from (seed, key, index): a stable hash, unlike Python's salted `hash`."""
    digest = hashlib.blake2b(f"{seed}:{index}:{','.join(map(str, key))}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


def _row_generator(seed: int, prompt_ids: Sequence[int], sample_index: int) -> torch.Generator:
    """A generator that depends only on (seed, prompt, sample index), never on the batch around it."""
    return torch.Generator().manual_seed(_derived_seed(seed, prompt_ids, sample_index))


@dataclass
class _Row:
    """One sequence being generated: sample `sample_index` of prompt `prompt_index`."""

    prompt_index: int
    sample_index: int
    budget: int
    generator: torch.Generator | None
    watcher: StopStringWatcher | None
    tokens: list[int] = field(default_factory=list)
    done: bool = False


@dataclass
class _Prefill:
    """A group of left-padded prompts run through the model once, ready to be expanded to rows."""

    input_ids: torch.Tensor  # [P, T]
    attention_mask: torch.Tensor  # [P, T]
    last_logits: torch.Tensor  # [P, V] float32, predicts the first new token
    cache: object | None  # KVCache with T positions filled, or None without the cache
    padded: bool = True  # whether any prompt is shorter than T (decided on the host, once)


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


# Compiled decoding rounds the cache length of a call up to a multiple of this, so that calls with
# slightly different prompts share a compiled graph.
STATIC_LEN_MULTIPLE = 64

_NAN_MESSAGE = (
    "the model returned NaN logits during generation; check the model's dtype and its handling "
    "of left padding (a fully masked attention row must not produce NaN)"
)


def _forward_last(model, input_ids, attention_mask, cache, padded: bool = True) -> torch.Tensor:
    """Logits [B, V] (float32) for the last position; mask and positions only when there is padding.

    `padded` is decided on the host once per prefill group (a group without padding never gets
    any), so no step asks the device whether the mask is all ones (a sync per token on CUDA).
    `logits_to_keep=1` spares the [B, S, vocab] logits of a long prompt, which can outweigh the model.
    """
    if padded:
        mask = attention_mask
        positions = _position_ids(attention_mask)[:, -input_ids.shape[1] :]
    else:
        mask = positions = None
    out = model(
        input_ids, attention_mask=mask, position_ids=positions, cache=cache, logits_to_keep=1
    )
    return out.logits[:, -1].float()


def _left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) [B, longest]: prompts right-aligned so all end at the last column."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for b, prompt in enumerate(prompts):
        input_ids[b, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[b, width - len(prompt) :] = 1
    return input_ids, attention_mask


def _prefill(
    model,
    prompts: list[list[int]],
    new_tokens: int,
    pad_id: int,
    use_cache: bool,
    cache_len: int | None = None,
) -> _Prefill:
    device = next(model.parameters()).device
    input_ids, attention_mask = _left_pad(prompts, pad_id)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    max_len = input_ids.shape[1] + new_tokens
    if hasattr(model, "prepare_for_decoding"):  # ACT: segments decided once, before the cache
        model.prepare_for_decoding(input_ids, attention_mask)
    if cache_len is not None:  # compiled decoding: one cache length for every group of a call
        max_len = max(max_len, cache_len)
    cache = model.allocate_cache(len(prompts), max_len, device=device) if use_cache else None
    padded = any(len(p) < input_ids.shape[1] for p in prompts)
    last_logits = _forward_last(model, input_ids, attention_mask, cache, padded)
    if torch.isnan(last_logits).any():  # once per prefill; decode steps: see _choose_tokens
        raise RuntimeError(_NAN_MESSAGE)
    return _Prefill(input_ids, attention_mask, last_logits, cache, padded)


@dataclass(frozen=True)
class _Sampling:
    greedy: bool
    temperature: float
    top_k: int
    top_p: float


def _choose_tokens(logits: torch.Tensor, rows: list[_Row], sampling: _Sampling) -> list[int]:
    """Next token of every row of the batch; rows already done get a token that is never used.

    A row whose logits hold a NaN comes back as -1 in the same transfer as the tokens, so checking
    for NaN costs no extra host-device synchronisation; a running row with NaN raises.
    """
    if sampling.greedy:
        chosen = logits.argmax(dim=-1)
    else:
        probs = next_token_probs(
            logits, temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p
        )
        uniforms = torch.tensor(  # finished rows draw nothing: their generators stay untouched
            [
                0.5 if row.done else torch.rand((), generator=row.generator, dtype=torch.float64)
                for row in rows
            ],
            dtype=torch.float64,
        )
        chosen = sample_from_probs(probs, uniforms)
    tokens = chosen.masked_fill(torch.isnan(logits).any(dim=-1), -1).tolist()
    if any(token == -1 and not row.done for token, row in zip(tokens, rows)):
        raise RuntimeError(_NAN_MESSAGE)
    return tokens


def _static_decode_step(model, input_ids, attention_mask, position_ids, cache) -> torch.Tensor:
    """One token per row on a static cache: fixed-shape inputs, the function `torch.compile` sees."""
    out = model(
        input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        cache=cache,
        logits_to_keep=1,
    )
    return out.logits[:, -1].float()


_COMPILED_STEPS: dict[str, object] = {}


def compiled_decode_step(device_type: str):
    """`torch.compile` of the fixed-shape decode step, built once per process and device type.

    CUDA: mode "reduce-overhead" (CUDA graphs: one launch per step instead of one per kernel);
    elsewhere the default mode. `dynamic=False`: every step of a group has the same shapes, and a new
    batch size or cache length (lengths are rounded to STATIC_LEN_MULTIPLE) is one more graph.
    """
    if device_type not in _COMPILED_STEPS:
        mode = "reduce-overhead" if device_type == "cuda" else None
        _COMPILED_STEPS[device_type] = torch.compile(_static_decode_step, mode=mode, dynamic=False)
    return _COMPILED_STEPS[device_type]


class _EagerStepper:
    """Decoding as the model's usual forward: a growing mask (only with padding), or no cache."""

    def __init__(self, model, input_ids, attention_mask, cache, padded: bool):
        self.model, self.input_ids, self.attention_mask = model, input_ids, attention_mask
        self.cache, self.padded = cache, padded

    def step(self, next_ids: torch.Tensor) -> torch.Tensor:
        if self.padded:  # without padding the mask stays all ones and is never passed
            ones = self.attention_mask.new_ones(self.attention_mask.shape[0], 1)
            self.attention_mask = torch.cat([self.attention_mask, ones], dim=1)
        if self.cache is None:
            self.input_ids = torch.cat([self.input_ids, next_ids], dim=1)
            return _forward_last(self.model, self.input_ids, self.attention_mask, None, self.padded)
        return _forward_last(self.model, next_ids, self.attention_mask, self.cache, self.padded)

    def select(self, index: torch.Tensor) -> None:
        """Keep only the batch rows `index` (a full copy of the cache: done rarely)."""
        self.input_ids, self.attention_mask = self.input_ids[index], self.attention_mask[index]
        if self.cache is not None:
            self.cache = self.cache.index_select(index)


class _StaticStepper:
    """Fixed-shape decoding (`generate(..., compile=True)`): a mask over all max_len cache columns,
    written in place, positions in a device tensor, and a static cache; the batch never shrinks."""

    def __init__(self, model, attention_mask, cache, step_fn):
        self.model, self.cache, self.step_fn = model, cache, step_fn
        batch, width = attention_mask.shape
        self.mask = attention_mask.new_zeros(batch, cache.max_len)
        self.mask[:, :width] = attention_mask
        self.positions = attention_mask.sum(-1, keepdim=True)  # position of each row's next token
        self.column = width
        cache.make_static()
        if cache.keys.is_cuda:  # CUDA graphs may then update the cache in place
            for tensor in (cache.keys, cache.values, cache.position):
                torch._dynamo.mark_static_address(tensor)

    def step(self, next_ids: torch.Tensor) -> torch.Tensor:
        self.mask[:, self.column] = 1
        if self.cache.keys.is_cuda:
            torch.compiler.cudagraph_mark_step_begin()
        logits = self.step_fn(self.model, next_ids, self.mask, self.positions, self.cache)
        self.cache.seq_len += 1  # host bookkeeping; the step itself advanced cache.position
        self.column += 1
        self.positions += 1
        return logits


def _decode_rows(
    model,
    prefill: _Prefill,
    rows: list[_Row],
    prompt_of_row: list[int],
    sampling: _Sampling,
    eos_token_id: int | None,
    last_use: bool,
    step_fn=None,
    static_batch: int | None = None,
    on_token: TokenCallback | None = None,
    on_progress: Callable[[int], None] | None = None,
    row_units: int = 0,
) -> None:
    """Generate every row to its end, appending to `row.tokens`; rows share their prompt's prefill.

    On the prefill's `last_use` its cache is handed over (used as is when the rows are exactly the
    prefilled prompts, else expanded and released) so that two copies never outlive this call.
    Finished rows stay in the batch (fed a dummy token, their output ignored) until more than half
    the batch is done; only then is the cache compacted, so a batch copies its cache at most
    log2(rows) times rather than once per finished row. With `step_fn` (fixed-shape decoding) the
    batch keeps its shape to the end, padded to `static_batch` rows with finished dummy rows so
    that every chunk of a call has the shape the step was compiled for. `on_progress` gets the
    units of each step (`ProgressCallback`, each row worth `row_units`).
    """
    device = prefill.input_ids.device
    batch = list(rows)  # the rows in cache order, finished ones included
    if step_fn is not None and static_batch is not None and len(rows) < static_batch:
        padding = static_batch - len(rows)
        prompt_of_row = prompt_of_row + [prompt_of_row[0]] * padding
        batch += [_Row(-1, -1, 0, None, None, done=True) for _ in range(padding)]
    use_cache = prefill.cache is not None
    index = torch.tensor(prompt_of_row, device=device)
    input_ids = prefill.input_ids[index]
    attention_mask = prefill.attention_mask[index]
    logits = prefill.last_logits[index]
    cache = None
    if use_cache:
        identity = prompt_of_row == list(range(prefill.input_ids.shape[0]))
        cache = prefill.cache if last_use and identity else prefill.cache.index_select(index)
        if last_use:
            prefill.cache = None
    if step_fn is not None:
        stepper = _StaticStepper(model, attention_mask, cache, step_fn)
    else:
        stepper = _EagerStepper(model, input_ids, attention_mask, cache, prefill.padded)
    while True:
        tokens = _choose_tokens(logits, batch, sampling)
        units = 0  # progress: one per token kept, plus what a row ending now leaves unused
        for row, token in zip(batch, tokens):
            if row.done:
                continue
            if token == eos_token_id:
                row.done = True
                units += row_units - len(row.tokens)
                continue
            row.tokens.append(token)
            if on_token is not None:
                on_token(row.prompt_index, row.sample_index, token)
            stopped = row.watcher is not None and row.watcher.update(row.tokens)
            row.done = stopped or len(row.tokens) >= row.budget
            units += 1 + (row_units - len(row.tokens) if row.done else 0)
        if on_progress is not None:
            on_progress(units)
        keep = [b for b, row in enumerate(batch) if not row.done]
        if not keep:
            return
        next_ids = torch.tensor([max(t, 0) for t in tokens], device=device).unsqueeze(1)
        if step_fn is None and 2 * len(keep) < len(batch):
            keep_index = torch.tensor(keep, device=device)
            batch = [batch[b] for b in keep]
            next_ids = next_ids[keep_index]
            stepper.select(keep_index)
        logits = stepper.step(next_ids)


def _group_prompts(
    lengths: list[int], budgets: list[int], group_size: int, max_seq_len: int | None
) -> list[list[int]]:
    """Prompt indices in prefill groups of similar length (longest first, so padding stays small).

    A left-padded group spans `width + new tokens` cache positions, which must fit in `max_seq_len`:
    a prompt whose token budget would overflow next to the group's longest prompt starts a new
    group instead, so no row ever gets fewer new tokens because of the batch it is in.
    """
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if groups and len(groups[-1]) < group_size:
            width = lengths[groups[-1][0]]
            if max_seq_len is None or width + budgets[i] <= max_seq_len:
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def _check_options(max_new_tokens, num_samples, temperature, top_p, top_k, batch_size) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(
            f"top_p must be in (0, 1], got {top_p}; use 1.0 to turn nucleus sampling off"
        )
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}; use 0 to turn top-k off")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


@torch.inference_mode()
def generate_ids(
    model,
    input_ids: list[list[int]],
    *,
    max_new_tokens: int,
    num_samples: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    eos_token_id: int | None = None,
    pad_token_id: int = 0,
    stop: Sequence[str] | None = None,
    tokenizer=None,
    seed: int | None = None,
    batch_size: int = 8,
    use_cache: bool = True,
    progress: bool = False,
    compile: bool = False,
    on_token: TokenCallback | None = None,
    draft: SpeculativeDraft | None = None,
) -> list[list[list[int]]]:
    """Generate `num_samples` continuations of each prompt; returns new token ids [prompt][sample].

    Greedy unless `do_sample` and `temperature > 0`. EOS ends a row and is not returned. With `stop`
    (needs `tokenizer`), a row ends once its decoded text contains a stop string; the tokens up to that
    point are returned (cut the text with `truncate_at_stop`). `batch_size` is the number of sequences
    decoded together (the cache holds `batch_size` rows). `use_cache=False` recomputes the whole
    sequence every step: slow, the reference the cache is tested against. `compile=True` decodes with
    fixed-shape steps on a static cache through `torch.compile` (CUDA graphs on CUDA); the prefill
    stays eager. The first call per batch shape pays the compilation. `on_token(prompt, sample,
    token)` is called for every token kept, as it is chosen (streaming; greedy decodes one row per
    prompt, reported as sample 0). `progress` shows a bar that moves per token (units as
    `ProgressCallback`: tokens, with what a sample ending early leaves unused counted as done, so
    its rate and ETA hold however early samples stop), with the samples finished beside it.

    `draft` (a `SpeculativeDraft`): speculative decoding, one prompt at a time; greedy only, the
    output is the greedy decoding of `model` (see `hrm_codegen.inference.speculative`), and the
    draft's counters report the acceptance.

    Rows are also capped at `model.config.max_seq_len` tokens in total (prompt + new), with a warning.
    """
    _check_options(max_new_tokens, num_samples, temperature, top_p, top_k, batch_size)
    if stop and tokenizer is None:
        raise ValueError("stop strings need the tokenizer to decode text: pass tokenizer=...")
    if compile and not use_cache:
        raise ValueError("compile=True decodes on the KV cache; it needs use_cache=True")
    if draft is not None and (do_sample and temperature > 0 or compile or not use_cache):
        raise ValueError(
            "speculative decoding (a draft model) is greedy, eager and cached: use temperature 0, "
            "no compile, use_cache=True"
        )
    prompts = [list(p) for p in input_ids]
    max_seq_len = getattr(model.config, "max_seq_len", None)
    budgets, capped = [], []
    for i, prompt in enumerate(prompts):
        if not prompt:
            raise ValueError(
                f"prompt {i} is empty; every prompt needs at least one token (e.g. BOS)"
            )
        budget = max_new_tokens
        if max_seq_len is not None:
            if len(prompt) >= max_seq_len:
                raise ValueError(
                    f"prompt {i} has {len(prompt)} tokens but the model's max_seq_len is "
                    f"{max_seq_len}; shorten the prompt to leave room for new tokens"
                )
            budget = min(max_new_tokens, max_seq_len - len(prompt))
            if budget < max_new_tokens:
                capped.append(f"prompt {i} ({len(prompt)} tokens) at {budget}")
        budgets.append(budget)
    if capped:
        warnings.warn(
            f"{len(capped)} prompt(s) get fewer than max_new_tokens={max_new_tokens} new tokens, "
            f"capped by the model's max_seq_len={max_seq_len}: {', '.join(capped[:5])}"
            + (", ..." if len(capped) > 5 else ""),
            stacklevel=2,
        )

    if draft is not None:
        return _speculative_ids(
            model, draft, prompts, budgets, num_samples, max_new_tokens, eos_token_id, stop,
            tokenizer, on_token, progress,
        )  # fmt: skip
    # an engine that holds one sequence at a time (llama.cpp) says so: decode its rows singly
    batch_size = min(batch_size, getattr(model, "max_batch_size", batch_size))
    greedy = not do_sample or temperature == 0
    sampling = _Sampling(greedy, temperature, top_k, top_p)
    if not greedy and seed is None:
        seed = int(torch.randint(2**62, ()).item())  # follows torch.manual_seed
    rows_per_prompt = 1 if greedy else num_samples  # greedy samples are all the same: decode one
    groups = _group_prompts(
        [len(p) for p in prompts], budgets, max(1, batch_size // rows_per_prompt), max_seq_len
    )
    results: list[list[list[int]]] = [[] for _ in prompts]
    device_type = next(model.parameters()).device.type
    step_fn = compiled_decode_step(device_type) if compile else None
    cache_len = None
    if compile:  # one (batch, cache length) shape for the whole call: a single compiled graph
        cache_len = max(len(prompts[g[0]]) + max(budgets[i] for i in g) for g in groups)
        cache_len = -(-cache_len // STATIC_LEN_MULTIPLE) * STATIC_LEN_MULTIPLE
        cache_len = min(cache_len, max_seq_len or cache_len)

    was_training = model.training
    model.eval()
    copies = num_samples if greedy else 1
    tracker = _Progress(len(prompts) * num_samples, max_new_tokens, copies, progress)
    samples_done = 0
    try:
        for group in groups:
            prefill = _prefill(
                model,
                [prompts[i] for i in group],
                max(budgets[i] for i in group),
                pad_token_id,
                use_cache,
                cache_len,
            )
            slots = [(g, j) for g in range(len(group)) for j in range(rows_per_prompt)]
            for chunk_start in range(0, len(slots), batch_size):
                chunk = slots[chunk_start : chunk_start + batch_size]
                rows = [
                    _Row(
                        prompt_index=group[g],
                        sample_index=j,
                        budget=budgets[group[g]],
                        generator=None if greedy else _row_generator(seed, prompts[group[g]], j),
                        watcher=StopStringWatcher(tokenizer, stop) if stop else None,
                    )
                    for g, j in chunk
                ]
                _decode_rows(
                    model,
                    prefill,
                    rows,
                    [g for g, _ in chunk],
                    sampling,
                    eos_token_id,
                    last_use=chunk_start + batch_size >= len(slots),
                    step_fn=step_fn,
                    static_batch=min(batch_size, len(prompts) * rows_per_prompt),
                    on_token=on_token,
                    on_progress=tracker.report,
                    row_units=max_new_tokens,
                )
                for row in rows:
                    results[row.prompt_index].extend(list(row.tokens) for _ in range(copies))
                samples_done += len(rows) * copies
                tracker.samples_done(samples_done)
    finally:
        tracker.close()
        if hasattr(model, "end_decoding"):
            model.end_decoding()
        model.train(was_training)
    return results


def _speculative_ids(
    model, draft, prompts, budgets, num_samples, max_new_tokens, eos_token_id, stop, tokenizer,
    on_token, progress,
) -> list[list[list[int]]]:  # fmt: skip
    """`generate_ids` with a draft model: each prompt decoded on its own by `speculative_decode`
    (greedy, so every sample is the same)."""
    from hrm_codegen.inference.speculative import speculative_decode

    tracker = _Progress(len(prompts) * num_samples, max_new_tokens, num_samples, progress)
    results = []
    try:
        for index, (prompt, budget) in enumerate(zip(prompts, budgets)):
            watcher = StopStringWatcher(tokenizer, stop) if stop else None
            tokens = speculative_decode(
                model,
                draft,
                prompt,
                max_new_tokens=budget,
                eos_token_id=eos_token_id,
                should_stop=watcher.update if watcher is not None else None,
                on_token=(lambda t, i=index: on_token(i, 0, t)) if on_token is not None else None,
            )
            results.append([list(tokens) for _ in range(num_samples)])
            if tracker.report is not None:
                tracker.report(max_new_tokens)
            tracker.samples_done((index + 1) * num_samples)
    finally:
        tracker.close()
    return results


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """BOS + prompt tokens: the start of the training sequence BOS + prompt + target + EOS."""
    if tokenizer.bos_token_id is None:
        raise ValueError("the tokenizer has no bos_token_id; load it with hrm_codegen.tokenization")
    return [tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]


def generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    num_samples: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    stop: Sequence[str] | None = None,
    seed: int | None = None,
    batch_size: int = 8,
    use_cache: bool = True,
    progress: bool = False,
    compile: bool = False,
    on_token: TokenCallback | None = None,
    draft: SpeculativeDraft | None = None,
) -> list[list[str]]:
    """Continue each prompt `num_samples` times; returns texts [prompt][sample].

    Each text is what follows the prompt, with EOS removed and cut before the first stop string.
    Prompts are encoded as BOS + prompt, as in training. Options (and the `on_token` streaming
    hook, which sees token ids; `draft` for speculative decoding) as in `generate_ids`;
    `temperature=0` means greedy.
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings; wrap a single prompt as [prompt]")
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    ids = generate_ids(
        model,
        [encode_prompt(tokenizer, p) for p in prompts],
        max_new_tokens=max_new_tokens,
        num_samples=num_samples,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=pad_id if pad_id is not None else 0,
        stop=stop,
        tokenizer=tokenizer,
        seed=seed,
        batch_size=batch_size,
        use_cache=use_cache,
        progress=progress,
        compile=compile,
        on_token=on_token,
        draft=draft,
    )
    return [
        [truncate_at_stop(tokenizer.decode(sample, **_DECODE_KWARGS), stop) for sample in samples]
        for samples in ids
    ]


# --------------------------------------------------------------------------------------------------
# Hugging Face models


@torch.inference_mode()
def generate_hf(
    hf_model,
    hf_tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    num_samples: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    stop: Sequence[str] | None = None,
    seed: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> list[list[str]]:
    """`generate` for a Hugging Face causal LM, through its own `generate`; same return shape.

    Prompts are tokenized the way the HF tokenizer does by default (it adds BOS only if its model
    expects one) and left-padded with its pad token, or EOS when it has none (as for GPT-2). Sampling is seeded through the global torch RNG (forked, so the caller's RNG state is
    untouched), once per generate call: the same seed and `batch_size` give the same samples, but unlike
    `generate` a sample depends on the batch it was drawn in.
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings; wrap a single prompt as [prompt]")
    _check_options(max_new_tokens, num_samples, temperature, top_p, top_k, batch_size)
    eos_id = hf_tokenizer.eos_token_id
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else eos_id
    if pad_id is None:
        raise ValueError(
            "the HF tokenizer has neither a pad nor an EOS token; set one to pad batches"
        )
    greedy = not do_sample or temperature == 0
    if not greedy and seed is None:
        seed = int(torch.randint(2**62, ()).item())
    rows_per_prompt = 1 if greedy else num_samples
    prompts_per_group = max(1, batch_size // rows_per_prompt)
    device = next(hf_model.parameters()).device
    options = {"max_new_tokens": max_new_tokens, "pad_token_id": pad_id, "eos_token_id": eos_id}
    if greedy:
        options["do_sample"] = False
    else:
        options.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k)
    if stop:
        options.update(stop_strings=list(stop), tokenizer=hf_tokenizer)

    results: list[list[str]] = [[] for _ in prompts]
    encoded_prompts = [hf_tokenizer(p)["input_ids"] for p in prompts]
    empty = [i for i, ids in enumerate(encoded_prompts) if not ids]
    if empty:
        raise ValueError(
            f"prompts {empty[:5]} encode to no tokens with this HF tokenizer; "
            "a model needs at least one prompt token to condition on"
        )
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    was_training = hf_model.training
    hf_model.eval()
    copies = num_samples if greedy else 1
    tracker = _Progress(len(prompts) * num_samples, max_new_tokens, copies, progress)
    samples_done = 0
    try:
        for start in range(0, len(prompts), prompts_per_group):
            group = list(range(start, min(start + prompts_per_group, len(prompts))))
            input_ids, attention_mask = _left_pad([encoded_prompts[i] for i in group], pad_id)
            encoded = {
                "input_ids": input_ids.to(device),
                "attention_mask": attention_mask.to(device),
            }
            for first_sample in range(0, rows_per_prompt, batch_size):
                count = min(batch_size, rows_per_prompt - first_sample)
                watch = {}
                if tracker.report is not None:
                    rows = len(group) * count  # each row one sample
                    watch["streamer"] = _StepStreamer(rows, max_new_tokens, tracker.report)
                with torch.random.fork_rng(devices=cuda_devices):
                    if not greedy:
                        torch.manual_seed(_derived_seed(seed, group, first_sample))
                    output = hf_model.generate(
                        **encoded, num_return_sequences=count, **options, **watch
                    )
                new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
                for r, tokens in enumerate(new_tokens):
                    if eos_id is not None and eos_id in tokens:
                        tokens = tokens[: tokens.index(eos_id)]
                    text = truncate_at_stop(hf_tokenizer.decode(tokens, **_DECODE_KWARGS), stop)
                    results[group[r // count]].extend([text] * copies)
                samples_done += len(new_tokens) * copies
                tracker.samples_done(samples_done)
    finally:
        tracker.close()
        hf_model.train(was_training)
    return results


class _StepStreamer:
    """A transformers streamer that only counts decoding steps, for `generate_hf`'s progress:
    `generate` hands it the prompt first, then the batch's new tokens once per step, then calls
    `end`. Every row is reported per step (an HF batch decodes until its last row ends), and
    `end` reports what the rows' `max_new_tokens` budgets left unused."""

    def __init__(self, rows: int, max_new_tokens: int, report: Callable[[int], None]):
        self.rows, self.max_new_tokens, self.report = rows, max_new_tokens, report
        self.prompt_seen, self.steps = False, 0

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.steps += 1
        self.report(self.rows)

    def end(self) -> None:
        self.report(self.rows * max(self.max_new_tokens - self.steps, 0))


# --------------------------------------------------------------------------------------------------
# Throughput (scripts/bench_generate.py)


def measure_throughput(
    model,
    *,
    batch_size: int,
    prompt_len: int,
    new_tokens: int,
    use_cache: bool = True,
    seed: int = 0,
    compile: bool = False,
) -> dict[str, float]:
    """Prompt tokens/s (prefill) and new tokens/s (decode) for greedy generation on random prompts.

    Prefill time is a run with one new token; decode time is the rest of a run with `new_tokens`, so
    each rate excludes the other phase. No EOS: every row runs to `new_tokens`. With `compile`, the
    warm-up is a full run, so compilation is not timed.
    """
    if new_tokens < 2:
        raise ValueError(
            f"new_tokens must be >= 2 to time decoding apart from prefill, got {new_tokens}"
        )
    generator = torch.Generator().manual_seed(seed)
    prompts = torch.randint(model.config.vocab_size, (batch_size, prompt_len), generator=generator)
    prompts = prompts.tolist()
    options = dict(batch_size=batch_size, use_cache=use_cache, compile=compile)
    warmup_tokens = new_tokens if compile else 2  # compiled: the same cache shape as timed
    generate_ids(model, prompts, max_new_tokens=warmup_tokens, **options)  # kernels, allocator
    start = time.perf_counter()
    generate_ids(model, prompts, max_new_tokens=1, **options)
    prefill_s = time.perf_counter() - start
    start = time.perf_counter()
    generate_ids(model, prompts, max_new_tokens=new_tokens, **options)
    total_s = time.perf_counter() - start
    decode_s = max(total_s - prefill_s, 1e-9)
    return {
        "prefill_s": prefill_s,
        "decode_s": decode_s,
        "prompt_tokens_per_s": batch_size * prompt_len / prefill_s,
        "new_tokens_per_s": batch_size * (new_tokens - 1) / decode_s,
    }
