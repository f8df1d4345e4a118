"""The Hierarchical Reasoning Model (arXiv:2506.21734) as a causal language model.

Two recurrent modules share one set of blocks each: a slow high-level module H and a fast low-level
module L. Per forward (one "segment"), for each of H_cycles: L_cycles times z_L = L(z_L, z_H + x),
then z_H = H(z_H, z_L); the logits read z_H. Only the last `bp_steps` module applications carry
gradients (bp_steps=2 is the paper's one-step gradient: the last L and the last H update).

With the Q head on and halt_max_steps > 1, training runs adaptive computation (ACT): up to
halt_max_steps segments, carrying detached z_H/z_L, each sequence halting when q_halt > q_continue
(after a random minimum number of segments with probability halt_exploration_prob); the halting
target is `halt_target` (see model/act.py). The trainer back-propagates one segment at a time
(`act_segment` + `act.act_segments`), so activation memory stays flat in halt_max_steps and halted
rows drop out of the batch; `forward` in training mode runs the same segments in one graph (same
loss). Evaluation runs halt_max_steps segments (or `set_inference_schedule(segments=N)`); generation
decides the number once per prompt group at prefill (`prepare_for_decoding`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hrm_codegen.losses import LOSS_TYPES, act_q_losses, sequence_is_correct, token_cross_entropy
from hrm_codegen.model.act import HALT_TARGETS, ACTSegmentOutput, ACTStats, act_segments
from hrm_codegen.model.checkpoint import PretrainedModel
from hrm_codegen.model.kv_cache import KVCache
from hrm_codegen.model.layers import (
    ATTN_IMPLS,
    AttentionInputs,
    Block,
    CausalLMOutput,
    CycleSchedule,
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
    prefix_lm: bool = False  # token_type_ids == 1 (prompt): bidirectional; see layers.py
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    enable_q_head: bool = False
    halt_max_steps: int = 1
    halt_exploration_prob: float = 0.1
    halt_target: str = "loss_plateau"  # see model/act.py; "exact" is the reference's
    halt_margin: float = 0.01  # loss_plateau: nats per token one more segment must gain
    loss: str = "softmax"
    attn_impl: str = "sdpa"

    def __post_init__(self) -> None:
        positive = ["vocab_size", "max_seq_len", "hidden_size", "num_heads", "H_layers", "L_layers"]
        positive += ["H_cycles", "L_cycles", "bp_steps", "halt_max_steps"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"HRMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.bp_steps < 2:
            raise ValueError(
                f"HRMConfig.bp_steps={self.bp_steps} trains only the last H update: the embedding "
                "and the L module would get no gradient; use bp_steps >= 2 (2 is the paper's "
                "one-step gradient)"
            )
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
        if self.halt_target not in HALT_TARGETS:
            raise ValueError(
                f"HRMConfig.halt_target={self.halt_target!r} is not one of {HALT_TARGETS}"
            )
        if self.halt_margin < 0:
            raise ValueError(f"HRMConfig.halt_margin must be >= 0, got {self.halt_margin}")
        if self.loss not in LOSS_TYPES:
            raise ValueError(f"HRMConfig.loss={self.loss!r} is not one of {LOSS_TYPES}")
        if self.prefix_lm and not self.causal:
            raise ValueError(
                "HRMConfig.prefix_lm=True needs causal=True (PrefixLM makes only the prompt "
                "bidirectional; causal=False already makes everything bidirectional)"
            )
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


class HRMForCausalLM(CycleSchedule, PretrainedModel):
    model_type = "hrm"
    config_class = HRMConfig
    recurrent = True  # has cycles to schedule (set_inference_schedule, set_training_cycles)

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
        self.inference_h_cycles: int | None = None  # see set_inference_schedule
        self.inference_l_cycles: int | None = None
        self.inference_segments: int | None = None
        self.decode_segments: int | None = None  # see prepare_for_decoding
        self.q_head = None
        if config.enable_q_head:  # starts strongly biased towards "continue" (sigmoid(-5) ~ 0.007)
            self.q_head = make_linear(config.hidden_size, 2, bias=True)
            with torch.no_grad():
                self.q_head.weight.zero_()
                self.q_head.bias.fill_(-5.0)

    # ------------------------------------------------------------------------- schedule

    def set_inference_schedule(
        self,
        h_cycles: int | None = None,
        l_cycles: int | None = None,
        segments: int | None = None,
    ) -> None:
        """Run more (or less) reasoning at inference than the model was trained with.

        Test-time compute: the weights stay as trained, the recurrence runs `h_cycles` x `l_cycles`
        per segment and `segments` segments (each from the detached carry of the last). None keeps
        the trained value (`config`, which is what `save_pretrained` writes). `allocate_cache`
        follows, so the KV cache holds one slot per block application actually run. Only for
        evaluation: a model in training mode with a schedule set refuses to run.
        """
        for name, value in (("h_cycles", h_cycles), ("l_cycles", l_cycles), ("segments", segments)):
            if value is not None and int(value) < 1:
                raise ValueError(f"set_inference_schedule({name}={value}): must be >= 1 (or None)")
        self.inference_h_cycles = int(h_cycles) if h_cycles is not None else None
        self.inference_l_cycles = int(l_cycles) if l_cycles is not None else None
        self.inference_segments = int(segments) if segments is not None else None

    @property
    def schedule_is_trained(self) -> bool:
        """True when no inference schedule overrides the trained one."""
        return (self.inference_h_cycles, self.inference_l_cycles, self.inference_segments) == (
            None,
            None,
            None,
        )

    # ------------------------------------------------------------------------- cache

    @property
    def num_segments_eval(self) -> int:
        """Segments per evaluation forward: forced (set_inference_schedule), else the prefill's
        decision (prepare_for_decoding), else halt_max_steps with the Q head (1 without)."""
        if self.inference_segments is not None:
            return self.inference_segments
        if self.decode_segments is not None:
            return self.decode_segments
        return self.config.halt_max_steps if self.q_head is not None else 1

    @torch.no_grad()
    def prepare_for_decoding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> int:
        """Decide, once per prefill group, how many segments every forward until `end_decoding`
        runs, and return it; call it before `allocate_cache` so the cache holds only those.

        A forced `set_inference_schedule(segments=N)` wins (N). Otherwise an ACT model runs
        segments on the prompts (no cache, no LM head) and each row asks for the first segment whose
        Q head (at the prompt's last position) prefers halting, or halt_max_steps; the group runs
        the max over its rows, so no prompt gets less compute than it asked for. Per-row counts
        would need the cache and the decode loop to carry them through row selection; the price of
        the group max is that a prompt's output can depend on the prompts batched with it (force
        `segments` for batch-invariant decoding). Without the Q head: one segment.
        """
        self.decode_segments = None
        if self.q_head is None or self.inference_segments is not None:
            return self.num_segments_eval
        c = self.config
        prompt = None
        if c.prefix_lm:  # the prompt as the cached prefill will see it: bidirectional
            prompt = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        attn = prepare_attention_inputs(
            self.rotary_emb,
            input_ids,
            attention_mask,
            None,
            None,
            c.causal,
            c.max_seq_len,
            token_type_ids=prompt,
            prefix_lm=c.prefix_lm,
        )
        x = self.embed_tokens(input_ids)
        z_H, z_L = self.initial_state(x)
        wanted = torch.full((input_ids.shape[0],), c.halt_max_steps, device=input_ids.device)
        for seg in range(1, c.halt_max_steps):
            z_H, z_L = self.segment(x, z_H, z_L, attn)
            q_halt, q_continue = self.q_logits(z_H, attention_mask)
            wanted = torch.where((q_halt > q_continue) & (wanted > seg), seg, wanted)
        self.decode_segments = int(wanted.max())
        return self.decode_segments

    def end_decoding(self) -> None:
        """Forget the prefill's decision (generation calls it when it is done)."""
        self.decode_segments = None

    def train(self, mode: bool = True) -> HRMForCausalLM:
        if mode:
            self.decode_segments = None  # a decoding decision never leaks into training
        return super().train(mode)

    @property
    def cache_slots_per_segment(self) -> int:
        c = self.config
        return self.h_cycles * (self.l_cycles * c.L_layers + c.H_layers)

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
        h_cycles, l_cycles = self.h_cycles, self.l_cycles
        grad_on = torch.is_grad_enabled()
        grad_from = h_cycles * (l_cycles + 1) - c.bp_steps
        step, slot = 0, first_slot
        for _ in range(h_cycles):
            for _ in range(l_cycles):
                with torch.set_grad_enabled(grad_on and step >= grad_from):
                    z_L = self.L_level(z_L, z_H + x, attn, cache, slot)
                step, slot = step + 1, slot + c.L_layers
            with torch.set_grad_enabled(grad_on and step >= grad_from):
                z_H = self.H_level(z_H, z_L, attn, cache, slot)
            step, slot = step + 1, slot + c.H_layers
        return z_H, z_L

    def q_logits(
        self,
        z_H: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(q_halt, q_continue), float32 [B].

        Causal: read z_H at each sequence's last real position (the first one sees only one token):
        position lengths - 1 when `lengths` (real tokens per row of a right-padded batch) is given,
        which lets training drop the mask and keep fused causal attention; else the mask's last 1.
        Bidirectional: position 0, as the reference model does.
        """
        if not self.config.causal:
            summary = z_H[:, 0]
        elif lengths is not None:
            last = (lengths.to(z_H.device).long() - 1).clamp_min(0)
            summary = z_H[torch.arange(z_H.shape[0], device=z_H.device), last]
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
        lengths: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> CausalLMOutput:
        """See docs/DESIGN.md. `logits_to_keep=k > 0` computes logits for the last k positions only
        (prefill for generation); it cannot be combined with labels. `lengths` [B] (real tokens per
        row of a right-padded batch) tells the Q head where each row ends without a mask.
        `token_type_ids` [B, S] (1 = prompt, bidirectional) only with `config.prefix_lm`."""
        c = self.config
        if self.training and not self.schedule_is_trained:
            raise ValueError(
                "an inference schedule (set_inference_schedule) is set on a model in training "
                "mode; call model.eval(), or set_inference_schedule() with no arguments to train"
            )
        if self.q_head is not None and self.training and c.halt_max_steps > 1:
            if cache is not None:
                raise ValueError(
                    "adaptive halting (training mode) cannot decode with a KV cache; call model.eval()"
                )
            if token_type_ids is not None:
                raise ValueError(
                    "adaptive halting (training-mode ACT) does not take token_type_ids yet; train "
                    "PrefixLM with halt_max_steps=1"
                )
            return self._forward_adaptive(
                input_ids, labels, attention_mask, position_ids, lengths, logits_to_keep
            )
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
            token_type_ids,
            c.prefix_lm,
        )
        x = self.embed_tokens(input_ids)
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
            out.q_halt_logits, out.q_continue_logits = self.q_logits(z_H, attention_mask, lengths)
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

    def act_segment(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        carry: tuple[torch.Tensor, torch.Tensor] | None = None,
        with_lm: bool = True,
    ) -> ACTSegmentOutput:
        """One training-mode ACT segment on a right-padded (or unpadded) batch of rows.

        `carry` is the previous segment's detached (z_H, z_L) for these rows (None: a fresh start).
        No attention mask (causal attention never lets a real token see right padding, so SDPA
        keeps its fused path); `lengths` locates each row's last real token for the Q head.
        `with_lm=False` skips the LM head (a Q-only look ahead). See model/act.py for the loop.
        """
        c = self.config
        attn = prepare_attention_inputs(
            self.rotary_emb, input_ids, None, None, None, c.causal, c.max_seq_len, labels
        )
        x = self.embed_tokens(input_ids)
        z_H, z_L = self.initial_state(x) if carry is None else carry
        z_H, z_L = self.segment(x, z_H.detach(), z_L.detach(), attn)
        q_halt, q_continue = self.q_logits(z_H, None, lengths)
        logits = token_loss = None
        if with_lm:
            logits = self.lm_head(z_H)
            if labels is not None:
                token_loss = token_cross_entropy(c.loss, logits, labels, reduction="none").sum(-1)
        return ACTSegmentOutput(logits, token_loss, q_halt, q_continue, z_H.detach(), z_L.detach())

    def _forward_adaptive(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        lengths: torch.Tensor | None,
        logits_to_keep: int,
    ) -> CausalLMOutput:
        """Training-mode ACT with every segment in one graph (the trainer back-propagates segment
        by segment instead, through `act_segment`; both give the same loss).

        Batches must be right-padded or unpadded: a mask only tells each row's length.
        """
        if position_ids is not None:
            raise ValueError("training-mode ACT takes no position_ids (right-padded batches only)")
        if lengths is None and attention_mask is not None:
            lengths = attention_mask.long().sum(-1)
            positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
            if not bool(((positions < lengths[:, None]).long() == attention_mask.long()).all()):
                raise ValueError(
                    "training-mode ACT needs right-padded batches (padding after the real tokens)"
                )
        segments = list(act_segments(self.config, self.act_segment, input_ids, labels, lengths))
        order = torch.argsort(torch.cat([s.rows[s.halted] for s in segments]))

        def final(parts: list[torch.Tensor]) -> torch.Tensor:  # each row's halting segment
            return torch.cat(parts)[order]

        out = CausalLMOutput(
            logits=final([s.logits[s.halted] for s in segments]),
            q_halt_logits=final([s.q_halt[s.halted] for s in segments]),
            q_continue_logits=final([s.q_continue[s.halted] for s in segments]),
        )
        if logits_to_keep:
            out.logits = out.logits[:, -logits_to_keep:]
        stats = ACTStats(self.config.halt_max_steps, input_ids.device)
        for segment in segments:
            stats.add(segment)
        out.metrics.update(stats.metrics(with_losses=labels is not None))
        if labels is None:
            return out
        tokens = stats.tokens.float().clamp_min(1)
        out.lm_loss = sum(s.token_loss for s in segments) / tokens
        out.loss = sum(s.loss_sum for s in segments) / tokens
        for key in ("lm_loss", "loss"):
            out.metrics.pop(key)
        return out
