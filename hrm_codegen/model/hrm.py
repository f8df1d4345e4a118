"""The Hierarchical Reasoning Model (arXiv:2506.21734) as a causal language model.

Two recurrent modules share one set of blocks each: a slow high-level module H and a fast low-level
module L. Per forward (one "segment"), for each of H_cycles: L_cycles times z_L = L(z_L, z_H + x),
then z_H = H(z_H, z_L); the logits read z_H. Only the last `bp_steps` module applications carry
gradients (bp_steps=2 is the paper's one-step gradient: the last L and the last H update).

With the Q head on and halt_max_steps > 1, training runs adaptive computation (ACT): up to
halt_max_steps segments, carrying detached z_H/z_L, each sequence halting when q_halt > q_continue
(after a random minimum number of segments with probability halt_exploration_prob). The reference
keeps the carry across optimiser steps; here the segments of one batch run inside one forward and
their losses are averaged over (sequence, segment) pairs that were still running, which gives the
same gradient as accumulating one step per segment. Evaluation always runs halt_max_steps segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hrm_codegen.losses import (
    IGNORE_INDEX,
    LOSS_TYPES,
    act_q_losses,
    q_continue_target,
    sequence_is_correct,
    token_cross_entropy,
)
from hrm_codegen.model.checkpoint import PretrainedModel
from hrm_codegen.model.kv_cache import KVCache
from hrm_codegen.model.layers import (
    ATTN_IMPLS,
    AttentionInputs,
    Block,
    CausalLMOutput,
    RotaryEmbedding,
    ScaledEmbedding,
    make_linear,
    prepare_attention_inputs,
    trunc_normal_,
)


@dataclass
class HRMConfig:
    vocab_size: int
    max_seq_len: int = 2048
    hidden_size: int = 512
    num_heads: int = 8
    num_key_value_heads: int | None = None
    expansion: float = 4.0
    H_layers: int = 4
    L_layers: int = 4
    H_cycles: int = 2
    L_cycles: int = 2
    bp_steps: int = 2
    causal: bool = True
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    enable_q_head: bool = False
    halt_max_steps: int = 1
    halt_exploration_prob: float = 0.1
    loss: str = "softmax"
    attn_impl: str = "sdpa"

    def __post_init__(self) -> None:
        positive = ["vocab_size", "max_seq_len", "hidden_size", "num_heads", "H_layers", "L_layers"]
        positive += ["H_cycles", "L_cycles", "bp_steps", "halt_max_steps"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"HRMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.bp_steps > self.num_module_applications:
            raise ValueError(
                f"HRMConfig.bp_steps={self.bp_steps} exceeds the {self.num_module_applications} module "
                f"applications per segment (H_cycles * (L_cycles + 1)); use at most that for full BPTT"
            )
        if self.halt_max_steps > 1 and not self.enable_q_head:
            raise ValueError(
                f"HRMConfig.halt_max_steps={self.halt_max_steps} needs enable_q_head=True "
                "(adaptive computation halts on the Q head)"
            )
        if not 0.0 <= self.halt_exploration_prob <= 1.0:
            raise ValueError(
                f"HRMConfig.halt_exploration_prob must lie in [0, 1], got {self.halt_exploration_prob}"
            )
        if self.loss not in LOSS_TYPES:
            raise ValueError(f"HRMConfig.loss={self.loss!r} is not one of {LOSS_TYPES}")
        if self.attn_impl not in ATTN_IMPLS:
            raise ValueError(f"HRMConfig.attn_impl={self.attn_impl!r} is not one of {ATTN_IMPLS}")

    @property
    def num_module_applications(self) -> int:
        """Module applications per segment: H_cycles * (L_cycles L updates + 1 H update)."""
        return self.H_cycles * (self.L_cycles + 1)

    @classmethod
    def reference(cls, vocab_size: int, **overrides) -> HRMConfig:
        """The paper's size: hidden 512, 8 heads, expansion 4, 4+4 layers, 2x2 cycles (27.3M
        parameters besides the embedding and LM head)."""
        return cls(vocab_size=vocab_size, **overrides)


class ReasoningModule(nn.Module):
    """A stack of blocks applied as module(z, injection) = blocks(z + injection)."""

    def __init__(self, config: HRMConfig, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            Block(
                config.hidden_size,
                config.num_heads,
                config.expansion,
                config.num_key_value_heads,
                config.rms_norm_eps,
                config.attn_impl,
            )
            for _ in range(num_layers)
        )

    def forward(
        self,
        z: torch.Tensor,
        injection: torch.Tensor,
        attn: AttentionInputs,
        cache: KVCache | None = None,
        first_slot: int = 0,
    ) -> torch.Tensor:
        h = z + injection
        for i, layer in enumerate(self.layers):
            h = layer(h, attn, cache, first_slot + i)
        return h


class HRMForCausalLM(PretrainedModel):
    model_type = "hrm"
    config_class = HRMConfig

    def __init__(self, config: HRMConfig):
        super().__init__()
        self.config = config
        head_dim = config.hidden_size // config.num_heads
        self.embed_tokens = ScaledEmbedding(config.vocab_size, config.hidden_size)
        self.rotary_emb = RotaryEmbedding(head_dim, config.rope_theta)
        self.H_level = ReasoningModule(config, config.H_layers)
        self.L_level = ReasoningModule(config, config.L_layers)
        self.register_buffer("H_init", trunc_normal_(torch.empty(config.hidden_size), std=1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(config.hidden_size), std=1.0))
        self.lm_head = make_linear(config.hidden_size, config.vocab_size)
        self.q_head = None
        if config.enable_q_head:  # starts strongly biased towards "continue" (sigmoid(-5) ~ 0.007)
            self.q_head = make_linear(config.hidden_size, 2, bias=True)
            with torch.no_grad():
                self.q_head.weight.zero_()
                self.q_head.bias.fill_(-5.0)

    # ------------------------------------------------------------------------- cache

    @property
    def num_segments_eval(self) -> int:
        return self.config.halt_max_steps if self.q_head is not None else 1

    @property
    def cache_slots_per_segment(self) -> int:
        c = self.config
        return c.H_cycles * (c.L_cycles * c.L_layers + c.H_layers)

    def allocate_cache(
        self,
        batch_size: int,
        max_len: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """One slot per layer per module application per segment."""
        return KVCache.for_model(
            self.num_segments_eval * self.cache_slots_per_segment,
            self.H_level.layers[0].self_attn,
            self.lm_head.weight,
            batch_size,
            max_len,
            device,
            dtype,
        )

    # ------------------------------------------------------------------------- forward

    def initial_state(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """H_init and L_init broadcast to the shape of the input embeddings [B, S, hidden]."""
        z_H = self.H_init.to(like.dtype).expand_as(like)
        z_L = self.L_init.to(like.dtype).expand_as(like)
        return z_H, z_L

    def segment(
        self,
        x: torch.Tensor,
        z_H: torch.Tensor,
        z_L: torch.Tensor,
        attn: AttentionInputs,
        cache: KVCache | None = None,
        first_slot: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One segment of H_cycles x L_cycles reasoning; only the last bp_steps applications keep
        gradients."""
        c = self.config
        grad_on = torch.is_grad_enabled()
        grad_from = c.num_module_applications - c.bp_steps
        step, slot = 0, first_slot
        for _ in range(c.H_cycles):
            for _ in range(c.L_cycles):
                with torch.set_grad_enabled(grad_on and step >= grad_from):
                    z_L = self.L_level(z_L, z_H + x, attn, cache, slot)
                step, slot = step + 1, slot + c.L_layers
            with torch.set_grad_enabled(grad_on and step >= grad_from):
                z_H = self.H_level(z_H, z_L, attn, cache, slot)
            step, slot = step + 1, slot + c.H_layers
        return z_H, z_L

    def q_logits(
        self, z_H: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(q_halt, q_continue), float32 [B].

        Causal: read z_H at each sequence's last real position (the first one sees only one token).
        Bidirectional: position 0, as the reference model does.
        """
        if not self.config.causal:
            summary = z_H[:, 0]
        elif attention_mask is None:
            summary = z_H[:, -1]
        else:
            seq_len = z_H.shape[1]
            ranks = attention_mask[:, -seq_len:].long() * torch.arange(
                1, seq_len + 1, device=z_H.device
            )
            last = ranks.argmax(-1)  # the last real position (0 for an all-padding row)
            summary = z_H[torch.arange(z_H.shape[0], device=z_H.device), last]
        q = self.q_head(summary).float()
        return q[..., 0], q[..., 1]

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        logits_to_keep: int = 0,
    ) -> CausalLMOutput:
        """See docs/DESIGN.md. `logits_to_keep=k > 0` computes logits for the last k positions only
        (prefill for generation); it cannot be combined with labels."""
        c = self.config
        attn = prepare_attention_inputs(
            self.rotary_emb,
            input_ids,
            attention_mask,
            position_ids,
            cache,
            c.causal,
            c.max_seq_len,
            labels,
            logits_to_keep,
        )
        x = self.embed_tokens(input_ids)
        if self.q_head is not None and self.training and c.halt_max_steps > 1:
            if cache is not None:
                raise ValueError(
                    "adaptive halting (training mode) cannot decode with a KV cache; call model.eval()"
                )
            out = self._forward_adaptive(x, labels, attn, attention_mask)
            if logits_to_keep:  # labels is None here: the losses used every position
                out.logits = out.logits[:, -logits_to_keep:]
            return out

        z_H, z_L = self.initial_state(x)
        for seg in range(self.num_segments_eval):
            z_H, z_L = self.segment(
                x, z_H.detach(), z_L.detach(), attn, cache, seg * self.cache_slots_per_segment
            )
        if cache is not None:
            cache.advance(input_ids.shape[1])
        logits = self.lm_head(z_H[:, -logits_to_keep:] if logits_to_keep else z_H)
        out = CausalLMOutput(logits=logits)
        if self.q_head is not None:
            out.q_halt_logits, out.q_continue_logits = self.q_logits(z_H, attention_mask)
        if labels is None:
            return out
        out.lm_loss = out.loss = token_cross_entropy(c.loss, logits, labels)
        if self.q_head is not None:  # a single-segment Q head: no next step to bootstrap from
            correct = sequence_is_correct(logits.detach(), labels)
            q = act_q_losses(out.q_halt_logits, None, correct)
            out.metrics.update({name: loss.detach() for name, loss in q.items()})
            out.metrics["q_halt_accuracy"] = ((out.q_halt_logits > 0) == correct).float().mean()
            if self.training:  # in evaluation the Q losses are diagnostics; loss stays the LM loss
                out.loss = out.lm_loss + 0.5 * q["q_halt_loss"]
        return out

    def _forward_adaptive(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None,
        attn: AttentionInputs,
        attention_mask: torch.Tensor | None,
    ) -> CausalLMOutput:
        """Training-mode ACT: up to halt_max_steps segments, per-sequence halting on the Q head.

        A sequence contributes to the losses of every segment it ran (it was "active"). With labels,
        one extra gradient-free segment gives the bootstrapped target for the last Q-continue.
        """
        c = self.config
        batch = x.shape[0]
        max_steps = c.halt_max_steps
        halted = torch.zeros(batch, dtype=torch.bool, device=x.device)
        steps = torch.zeros(batch, dtype=torch.long, device=x.device)
        z_H, z_L = self.initial_state(x)
        logits = q_halt = q_cont = None
        active_rows, q_halts, q_conts, corrects = [], [], [], []
        token_loss_sum = x.new_zeros((), dtype=torch.float32)
        token_count = x.new_zeros((), dtype=torch.float32)

        for step in range(max_steps):
            z_H, z_L = self.segment(x, z_H.detach(), z_L.detach(), attn)
            step_logits = self.lm_head(z_H)
            step_q_halt, step_q_cont = self.q_logits(z_H, attention_mask)
            active = ~halted
            steps += active.long()
            keep = active.view(batch, 1, 1)
            logits = step_logits if logits is None else torch.where(keep, step_logits, logits)
            q_halt = step_q_halt if q_halt is None else torch.where(active, step_q_halt, q_halt)
            q_cont = step_q_cont if q_cont is None else torch.where(active, step_q_cont, q_cont)
            if labels is not None:
                per_token = token_cross_entropy(c.loss, step_logits, labels, reduction="none")
                row_tokens = (labels != IGNORE_INDEX).sum(-1).float()
                token_loss_sum = token_loss_sum + (per_token.sum(-1) * active).sum()
                token_count = token_count + (row_tokens * active).sum()
                corrects.append(sequence_is_correct(step_logits.detach(), labels))
            active_rows.append(active)
            q_halts.append(step_q_halt)
            q_conts.append(step_q_cont)

            # halting decision (as the reference): at the last step, or when Q says halt after a
            # random minimum number of steps (exploration)
            with torch.no_grad():
                explore = torch.rand(batch, device=x.device) < c.halt_exploration_prob
                min_steps = torch.randint(2, max_steps + 1, (batch,), device=x.device) * explore
                wants_halt = (step_q_halt > step_q_cont) & (step + 1 >= min_steps)
                halted = halted | wants_halt | (step + 1 >= max_steps)

        out = CausalLMOutput(logits=logits, q_halt_logits=q_halt, q_continue_logits=q_cont)
        out.metrics["act_steps"] = steps.float().mean()
        if labels is None:
            return out

        with torch.no_grad():  # next-step Q values for the bootstrapped Q-continue targets
            z_H, _ = self.segment(x, z_H.detach(), z_L.detach(), attn)
            next_q_halt, next_q_cont = self.q_logits(z_H, attention_mask)
        next_halts = torch.stack([*q_halts[1:], next_q_halt]).detach()
        next_conts = torch.stack([*q_conts[1:], next_q_cont]).detach()
        is_last = torch.zeros_like(next_halts, dtype=torch.bool)
        is_last[-1] = True
        targets = q_continue_target(next_halts, next_conts, is_last)

        weight = torch.stack(active_rows).float()
        q = act_q_losses(
            torch.stack(q_halts).flatten(),
            torch.stack(q_conts).flatten(),
            torch.stack(corrects).flatten(),
            targets.flatten(),
            weight.flatten(),
        )
        out.lm_loss = token_loss_sum / token_count.clamp_min(1)
        out.loss = out.lm_loss + 0.5 * (q["q_halt_loss"] + q["q_continue_loss"])
        out.metrics.update({name: loss.detach() for name, loss in q.items()})
        halt_right = (torch.stack(q_halts) > 0) == torch.stack(corrects)
        out.metrics["q_halt_accuracy"] = (halt_right.float() * weight).sum() / weight.sum()
        return out
