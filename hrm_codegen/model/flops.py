"""Model FLOPs per trained token of each model family: the formulas the registry entries point at.

`hrm_codegen.training.flops.flops_count` reads the family's formula off its registry entry
(`hrm_codegen.model.registry`, field `flops`) for model FLOPs utilisation (MFU). The model FLOPs
are what the architecture needs (matrix multiplies only), not what the kernels happen to do (no recomputation, no
padding waste). Conventions, following PaLM (Chowdhery et al. 2022, appendix B) and nanoGPT:

- A dense layer with P weights costs 2·P FLOPs per token forward (one multiply-add per weight) and
  4·P backward (gradients for the input and for the weights).
- Attention scores and the weighted sum cost 2·S·d each per token forward, so 4·S·d per block
  application forward and 8·S·d backward, with S the sequence length and d the hidden size (the
  PaLM count; it does not halve for the causal mask).
- The token embedding is a lookup: no FLOPs. The LM head is a dense layer.

For a transformer of L blocks with P_b weights each this gives the familiar
6·N + 12·L·d·S per token, N = L·P_b + P_head.

The HRM applies its blocks many times per forward. Per segment it runs, H_cycles times, L_cycles
applications of the L-module (L_layers blocks each) followed by one application of the H-module
(H_layers blocks): A_fwd = H_cycles·(L_cycles·L_layers + H_layers) block applications forward. With the
paper's one-step gradient only the last `bp_steps` module applications carry gradients, so the backward
runs through A_bwd blocks (the blocks of those last applications; with bp_steps = 2 that is
L_layers + H_layers). Every block has the same shape, so with P_b weights per block:

    FLOPs/token = 2·P_b·A_fwd + 4·S·d·A_fwd + 2·P_head        (forward)
                + 4·P_b·A_bwd + 8·S·d·A_bwd + 4·P_head        (backward)

times the number of segments a token runs: 1 without adaptive computation. With the Q head and
halt_max_steps = M > 1 (training-mode ACT, model/act.py) each sequence runs between 1 and M segments
(each with its LM head, forward and backward; halted sequences leave the batch) and, once, one
gradient-free look-ahead segment of blocks for its Q targets, (2·P_b + 4·S·d)·A_fwd, plus the LM
head forward 2·P_head when the halting target is `loss_plateau` (it needs the next segment's loss).
The trainer counts the segments actually run (`segment_flops_per_token` x tokens per segment, plus
`lookahead_flops_per_token` x tokens); `training_flops_per_token` is the most a token can cost (all
M segments), used for estimates. The transformer is the special case A_fwd = A_bwd = L.

transformers' HRM-Text (`model_type: hrm_text`, model/hf_models.py) has one stack depth n for H and
L and routes gradients differently: every H application carries them, and in H cycle h only the last
k_h of its L_cycles L applications (`L_bp_cycles`, left-padded with 1s). So A_fwd =
H_cycles·(L_cycles + 1)·n and A_bwd = Σ_h (k_h + 1)·n. When the last cycle's k warms up during
training (`L_bp_warmup_to`), `flops_count(model, progress=f)` counts at fraction f of training, and
without `progress` A_bwd is its mean over the whole schedule (what a FLOP budget is spread over).
transformers' Llama is a plain stack: A_fwd = A_bwd = its layers. Their blocks hold a few more
weights than ours (HRM-Text: the attention's sigmoid gate, d² more; Llama: two norm weights),
which P_b counts.

Without embedding and LM head (`exclude_embeddings=True`): the same counts less the LM head's
2·P_head forward and 4·P_head backward per segment (and its look-ahead forward), i.e. less 6·d·V per
token for a plain model (the embedding lookup costs nothing either way). That is the compute
Kaplan et al. (2020) fit their scaling laws against (C ≈ 6·N per token, N the non-embedding
parameters, `num_parameters(exclude_embeddings=True)`; here plus the attention term), while
Chinchilla-style fits count every parameter, and the head's share differs between a small and a
large vocabulary; so runs record both (`flops`, `flops_no_embed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hrm_codegen.model.hf_models import bp_cycles_at


@dataclass(frozen=True)
class FlopsCount:
    """The numbers the per-token FLOPs come from, kept so tables and logs can show them."""

    block_params: int
    head_params: int
    hidden_size: int
    forward_blocks: int
    backward_blocks: float  # a mean (not an integer) over a warmed-up gradient schedule
    segments: int = 1  # most segments with LM head and backward per token (ACT: halt_max_steps)
    bootstrap_segments: int = 0  # gradient-free look-ahead segments per token (ACT: 1)
    bootstrap_head: bool = False  # the look ahead runs the LM head (halt_target loss_plateau)

    def _blocks_forward(self, seq_len: int) -> float:
        attn = 4.0 * seq_len * self.hidden_size  # forward attention FLOPs per block application
        return (2.0 * self.block_params + attn) * self.forward_blocks

    def _head(self, exclude_embeddings: bool) -> int:
        """The LM head's weights as counted: none for the non-embedding count."""
        return 0 if exclude_embeddings else self.head_params

    def segment_flops_per_token(self, seq_len: int, *, exclude_embeddings: bool = False) -> float:
        """Forward + backward model FLOPs of one segment for one token of a `seq_len` sequence
        (`exclude_embeddings`: without the LM head's)."""
        head = self._head(exclude_embeddings)
        attn = 4.0 * seq_len * self.hidden_size
        forward = self._blocks_forward(seq_len) + 2.0 * head
        backward = (4.0 * self.block_params + 2.0 * attn) * self.backward_blocks
        return forward + backward + 4.0 * head

    def lookahead_flops_per_token(self, seq_len: int, *, exclude_embeddings: bool = False) -> float:
        """Forward FLOPs of one gradient-free ACT look-ahead segment (0 without ACT)."""
        if not self.bootstrap_segments:
            return 0.0
        head = self._head(exclude_embeddings)
        return self._blocks_forward(seq_len) + (2.0 * head if self.bootstrap_head else 0)

    def training_flops_per_token(self, seq_len: int, *, exclude_embeddings: bool = False) -> float:
        """Forward + backward model FLOPs for one token in a sequence of `seq_len` tokens (with
        ACT: the most it can cost, every segment run); `exclude_embeddings`: without the LM head's
        (the embedding is a lookup and costs nothing in either count)."""
        segment = self.segment_flops_per_token(seq_len, exclude_embeddings=exclude_embeddings)
        lookahead = self.lookahead_flops_per_token(seq_len, exclude_embeddings=exclude_embeddings)
        return self.segments * segment + self.bootstrap_segments * lookahead

    def head_flops_per_token(self, segments: float = 1.0) -> float:
        """The LM head's forward + backward FLOPs for one token that runs `segments` segments with
        a backward (1 without ACT), plus its look-ahead head forward when ACT has one. It does not
        depend on the sequence length, so the trainer can take it off the FLOPs a step ran however
        the step's micro-batches were padded (`non_embedding_flops`)."""
        lookahead = 2.0 * self.head_params if self.bootstrap_head else 0.0
        return 6.0 * self.head_params * segments + self.bootstrap_segments * lookahead

    def non_embedding_flops(self, flops: float, tokens: float, segments: float = 1.0) -> float:
        """`flops` that `tokens` tokens ran (a training step's, as executed) less the LM head's
        share: exact without ACT; with ACT pass the mean segments per sequence (`act_steps`), exact
        when every row has the same length (packed windows) and a length-unweighted estimate for
        padded rows."""
        return flops - tokens * self.head_flops_per_token(segments)


def hrm_module_schedule(h_cycles: int, l_cycles: int) -> list[str]:
    """Order of module applications in one HRM segment: 'L' x l_cycles then 'H', h_cycles times."""
    return (["L"] * l_cycles + ["H"]) * h_cycles


def hrm_text_backward_applications(h_cycles: int, l_bp_cycles: list[int]) -> list[int]:
    """Stack applications per H cycle that carry gradients in HRM-Text: its last k_h L steps and
    its H step, with transformers' `L_bp_cycles` left-padded with 1s to h_cycles entries."""
    padded = [1] * max(0, h_cycles - len(l_bp_cycles)) + list(l_bp_cycles)
    return [int(k) + 1 for k in padded[:h_cycles]]


def hrm_flops(model: torch.nn.Module, progress: float | None = None) -> FlopsCount:
    """Our HRM (model/hrm.py): its blocks applied per segment, the one-step gradient through the
    last `bp_steps` module applications, and ACT's segments and look-ahead."""
    del progress  # nothing of the HRM's schedule warms up
    cfg = model.config
    hidden = int(cfg.hidden_size)
    head_params = sum(p.numel() for p in model.lm_head.parameters())
    h_layers, l_layers = int(cfg.H_layers), int(cfg.L_layers)
    block_params = params_per_block(model, h_layers + l_layers)
    # this training step's depth when randomized (training/depth.py), else the configured one
    h = getattr(model, "training_h_cycles", None) or int(cfg.H_cycles)
    l_cycles = getattr(model, "training_l_cycles", None) or int(cfg.L_cycles)
    schedule = hrm_module_schedule(int(h), int(l_cycles))
    layers = {"L": l_layers, "H": h_layers}
    bp_steps = min(int(getattr(cfg, "bp_steps", 2)), len(schedule))
    forward_blocks = sum(layers[m] for m in schedule)
    backward_blocks = sum(layers[m] for m in schedule[len(schedule) - bp_steps :])
    halt_max_steps = int(getattr(cfg, "halt_max_steps", 1))
    if getattr(model, "q_head", None) is not None and halt_max_steps > 1:  # training-mode ACT
        counts = (block_params, head_params, hidden, forward_blocks, backward_blocks)
        head = getattr(cfg, "halt_target", "exact") == "loss_plateau"
        return FlopsCount(
            *counts, segments=halt_max_steps, bootstrap_segments=1, bootstrap_head=head
        )
    return FlopsCount(block_params, head_params, hidden, forward_blocks, backward_blocks)


def transformer_flops(model: torch.nn.Module, progress: float | None = None) -> FlopsCount:
    """Our transformer baseline (model/transformer.py): every block once, forward and backward."""
    del progress
    cfg = model.config
    head_params = sum(p.numel() for p in model.lm_head.parameters())
    n_layers = int(cfg.n_layers)
    block_params = params_per_block(model, n_layers)
    return FlopsCount(block_params, head_params, int(cfg.hidden_size), n_layers, n_layers)


def llama_flops(model: torch.nn.Module, progress: float | None = None) -> FlopsCount:
    """transformers' Llama in our adapter (model/hf_models.py): a plain stack."""
    del progress
    head_params = sum(p.numel() for p in model.lm_head.parameters())
    layers = model.hf.model.layers
    block_params = sum(p.numel() for p in layers[0].parameters())
    return FlopsCount(
        block_params, head_params, int(model.config.hidden_size), len(layers), len(layers)
    )


def hrm_text_flops(model: torch.nn.Module, progress: float | None = None) -> FlopsCount:
    """transformers' HRM-Text in our adapter (model/hf_models.py), read off the transformers
    model: `progress` (0..1) is where in training, for its warmed-up gradient schedule; None: the
    mean over training."""
    cfg = model.config
    hidden = int(cfg.hidden_size)
    head_params = sum(p.numel() for p in model.lm_head.parameters())
    stack = model.hf.model.H_module.layers
    block_params = sum(p.numel() for p in stack[0].parameters())
    # this training step's depth when randomized (training/depth.py), else the configured one
    h_cycles = int(getattr(model, "training_h_cycles", None) or cfg.H_cycles)
    l_cycles = int(getattr(model, "training_l_cycles", None) or cfg.L_cycles)
    n = len(stack)
    forward_blocks = h_cycles * (l_cycles + 1) * n

    def backward_at(last: int) -> int:
        # the configured schedule's last entries for a shallower or deeper model (1 before them),
        # each at most the L steps run: what HFCausalLM._bp_padded hands transformers
        raw = cfg.bp_schedule_list(last=last)[-h_cycles:]
        steps = [min(k, l_cycles) for k in raw]
        return n * sum(hrm_text_backward_applications(h_cycles, steps))

    if progress is not None or cfg.L_bp_warmup_to is None:
        backward: float = backward_at(bp_cycles_at(cfg, progress or 0.0))
    else:  # each warm-up value for an equal share of the warm-up, then the final one
        start, end, fraction = (
            cfg.bp_schedule_list()[-1],
            cfg.L_bp_warmup_to,
            cfg.L_bp_warmup_fraction,
        )
        values = range(start, end + 1)
        backward = sum(backward_at(k) for k in values) * fraction / len(values)
        backward += backward_at(end) * (1.0 - fraction)
    return FlopsCount(block_params, head_params, hidden, forward_blocks, backward)


def params_per_block(model: torch.nn.Module, n_blocks: int) -> int:
    """Weights in one block: everything but the embedding, the LM head and the Q head, shared out."""
    skip = {
        id(p) for name in ("embed_tokens", "lm_head", "q_head") for p in _module_params(model, name)
    }
    body = sum(p.numel() for p in model.parameters() if id(p) not in skip)
    return body // n_blocks


def _module_params(model: torch.nn.Module, name: str) -> list[torch.nn.Parameter]:
    module = getattr(model, name, None)
    return list(module.parameters()) if isinstance(module, torch.nn.Module) else []
