"""Prompts fitted to a model's context: what a small model is asked when the whole prompt is too
long.

A model of `max_seq_len` L keeps R = min(max_new_tokens, L // 2) tokens for its answer, so a
prompt may take L - R tokens (BOS included). The rule, stated once (docs/DESIGN.md, Polyglot):

- try 1: the prompt as `first_prompt` builds it when it fits (`whole`); else the instructions'
  tail is cut, their head kept, with a marker line where they stop (`truncated`); the stub files
  and the answer rules are never cut, so when they alone do not fit the exercise is skipped
  (`prompt_too_long`: no response, try 1 failed for want of context);
- try 2: the conversation so far in front when it fits (`whole`); else without it
  (`history_dropped`); else also the test output's tail cut, its head kept (`truncated`); when
  the files and rules alone do not fit, try 2 is skipped (`prompt_too_long`).

The cuts are made on characters, searched by bisection over the token count, so a kept prefix
is the longest (to within the tokenizer's merges) that fits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from hrm_codegen.evaluation.polyglot.exercises import Exercise
from hrm_codegen.evaluation.polyglot.prompts import first_prompt, second_prompt

CUT_MARKER = "\n[cut here to fit the model's context]\n"
FITS = ("whole", "history_dropped", "truncated", "prompt_too_long")


@dataclass(frozen=True)
class FittedPrompt:
    """A prompt as sent (`text`, None when skipped), how it was fitted (one of `FITS`) and its
    tokens (BOS included; when skipped, the fewest the prompt could take)."""

    text: str | None
    fit: str
    tokens: int

    @property
    def skipped(self) -> bool:
        return self.text is None


def response_reserve(max_seq_len: int, max_new_tokens: int) -> int:
    """The tokens kept for the answer: `max_new_tokens`, but at most half the context, so that a
    model whose context is not longer than its answer budget still gets a prompt."""
    if max_seq_len < 2:
        raise ValueError(f"max_seq_len={max_seq_len} leaves no room for a prompt and an answer")
    return max(1, min(max_new_tokens, max_seq_len // 2))


def _longest_prefix(text: str, fits: Callable[[str], bool]) -> int:
    """The longest n with fits(text[:n]), by bisection (0 when nothing fits but the empty cut;
    the caller checks that one)."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(text[:middle]):
            low = middle
        else:
            high = middle - 1
    return low


def _cut(head: str) -> str:
    """A kept head with the marker where the text stops."""
    return head.rstrip() + CUT_MARKER


class PromptFitter:
    """Builds try-1 and try-2 prompts of at most `max_prompt_tokens` tokens (BOS included),
    counting with `count_tokens` (the prompt's tokens without BOS)."""

    def __init__(self, count_tokens: Callable[[str], int], max_prompt_tokens: int) -> None:
        if max_prompt_tokens < 2:
            raise ValueError(f"max_prompt_tokens={max_prompt_tokens} leaves no room for a prompt")
        self.count_tokens = count_tokens
        self.max_prompt_tokens = max_prompt_tokens

    @classmethod
    def for_model(cls, model: Any, tokenizer: Any, max_new_tokens: int) -> PromptFitter | None:
        """The fitter for `model`'s context (`config.max_seq_len`, or a transformers model's
        `max_position_embeddings`); None when the model states none."""
        config = getattr(model, "config", None)
        limit = getattr(config, "max_seq_len", None) or getattr(
            config, "max_position_embeddings", None
        )
        if not limit:
            return None
        budget = int(limit) - response_reserve(int(limit), max_new_tokens)

        def count(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        return cls(count, budget)

    def tokens(self, text: str) -> int:
        """The prompt's tokens as the model reads them: BOS + the text."""
        return 1 + self.count_tokens(text)

    def _fits(self, text: str) -> bool:
        return self.tokens(text) <= self.max_prompt_tokens

    def first(self, exercise: Exercise, edit_format: str, files: Mapping[str, str]) -> FittedPrompt:
        """Try 1's prompt, the instructions' tail cut when the whole does not fit."""
        full = first_prompt(exercise, edit_format, files)
        full_tokens = self.tokens(full)
        if full_tokens <= self.max_prompt_tokens:
            return FittedPrompt(full, "whole", full_tokens)

        def with_instructions(kept: str) -> str:
            return first_prompt(replace(exercise, instructions=kept), edit_format, files)

        bare = with_instructions(CUT_MARKER)
        if not self._fits(bare):
            return FittedPrompt(None, "prompt_too_long", self.tokens(bare))
        text = exercise.instructions
        kept = _longest_prefix(text, lambda head: self._fits(with_instructions(_cut(head))))
        prompt = with_instructions(_cut(text[:kept]))
        return FittedPrompt(prompt, "truncated", self.tokens(prompt))

    def second(
        self,
        exercise: Exercise,
        edit_format: str,
        files: Mapping[str, str],
        test_output: str,
        *,
        first: str = "",
        first_response: str = "",
    ) -> FittedPrompt:
        """Try 2's prompt: with the conversation so far, else without, else with the test
        output's tail cut."""
        full = second_prompt(
            exercise, edit_format, files, test_output, first=first, first_response=first_response
        )
        full_tokens = self.tokens(full)
        if full_tokens <= self.max_prompt_tokens:
            return FittedPrompt(full, "whole", full_tokens)

        def without_history(output: str) -> str:
            return second_prompt(exercise, edit_format, files, output)

        alone = without_history(test_output)
        if self._fits(alone):
            return FittedPrompt(alone, "history_dropped", self.tokens(alone))
        bare = without_history(CUT_MARKER)
        if not self._fits(bare):
            return FittedPrompt(None, "prompt_too_long", self.tokens(bare))
        output = test_output.strip()
        kept = _longest_prefix(output, lambda head: self._fits(without_history(_cut(head))))
        prompt = without_history(_cut(output[:kept]))
        return FittedPrompt(prompt, "truncated", self.tokens(prompt))


__all__ = ["CUT_MARKER", "FITS", "FittedPrompt", "PromptFitter", "response_reserve"]
