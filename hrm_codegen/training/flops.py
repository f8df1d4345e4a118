"""Model FLOPs per trained token and peak device FLOPs, for model FLOPs utilisation (MFU).

MFU = achieved model FLOPs per second / peak FLOPs per second, where the model FLOPs are what the
architecture needs (matrix multiplies only), not what the kernels happen to do (no recomputation, no
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

import re
from dataclasses import dataclass
from pathlib import Path

import torch

# Dense bf16 tensor-core peaks (no sparsity), from the vendors' data sheets (SXM parts).
GPU_PEAK_FLOPS = {"a100": 312e12, "h100": 989e12, "h200": 989e12}


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


def flops_count(model: torch.nn.Module, *, progress: float | None = None) -> FlopsCount:
    """Read the block structure off one of our models (HRM or transformer, or transformers'
    HRM-Text / Llama in our adapter) and its config. `progress` (0..1): where in training, for a
    gradient schedule that warms up (HRM-Text); None: its mean over training."""
    cfg = model.config
    hidden = int(cfg.hidden_size)
    head_params = sum(p.numel() for p in model.lm_head.parameters())
    model_type = getattr(cfg, "model_type", None) or type(model).__name__
    if model_type in ("hrm_text", "llama"):
        return _hf_flops_count(model, head_params, progress)
    if "hrm" in str(model_type).lower():
        h_layers, l_layers = int(cfg.H_layers), int(cfg.L_layers)
        block_params = _params_per_block(model, h_layers + l_layers)
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
    else:
        n_layers = int(cfg.n_layers)
        block_params = _params_per_block(model, n_layers)
        forward_blocks = backward_blocks = n_layers
    return FlopsCount(block_params, head_params, hidden, forward_blocks, backward_blocks)


def _hf_flops_count(model: torch.nn.Module, head_params: int, progress: float | None) -> FlopsCount:
    """HRM-Text and Llama, read off the transformers model inside the adapter."""
    from hrm_codegen.model.hf_models import bp_cycles_at

    cfg = model.config
    hidden = int(cfg.hidden_size)
    if cfg.model_type == "llama":
        layers = model.hf.model.layers
        block_params = sum(p.numel() for p in layers[0].parameters())
        return FlopsCount(block_params, head_params, hidden, len(layers), len(layers))
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


def _params_per_block(model: torch.nn.Module, n_blocks: int) -> int:
    """Weights in one block: everything but the embedding, the LM head and the Q head, shared out."""
    skip = {
        id(p) for name in ("embed_tokens", "lm_head", "q_head") for p in _module_params(model, name)
    }
    body = sum(p.numel() for p in model.parameters() if id(p) not in skip)
    return body // n_blocks


def _module_params(model: torch.nn.Module, name: str) -> list[torch.nn.Parameter]:
    module = getattr(model, name, None)
    return list(module.parameters()) if isinstance(module, torch.nn.Module) else []


def peak_flops(device: torch.device | str, override: float | None = None) -> float | None:
    """Peak FLOP/s of `device`: the override, the GPU table, or a CPU estimate; None if unknown."""
    if override:
        return float(override)
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower()
        for key, value in GPU_PEAK_FLOPS.items():
            if key in name:
                return value
        return None
    if device.type == "cpu":
        return cpu_peak_flops()
    return None


def cpu_peak_flops(cpuinfo: str | None = None, threads: int | None = None) -> float | None:
    """Float32 FMA peak of the CPU threads torch uses: threads x GHz x FLOPs per cycle.

    A rough ceiling from /proc/cpuinfo: AVX-512 cores do 64 float32 FLOPs per cycle (two 16-wide FMA
    units), AVX2+FMA cores 32. Pass `--peak-flops` for a measured number.
    """
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        if not path.exists():
            return None
        cpuinfo = path.read_text(errors="replace")
    flags_line = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    if "avx512f" in flags:
        per_cycle = 64
    elif "avx2" in flags and "fma" in flags:
        per_cycle = 32
    else:
        per_cycle = 8
    ghz_in_name = re.search(r"^model name\s*:.*@\s*([\d.]+)\s*GHz", cpuinfo, re.MULTILINE)
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.MULTILINE)
    if ghz_in_name:
        hz = float(ghz_in_name.group(1)) * 1e9
    elif mhz:
        hz = float(mhz.group(1)) * 1e6
    else:
        return None
    return (threads or torch.get_num_threads()) * hz * per_cycle
