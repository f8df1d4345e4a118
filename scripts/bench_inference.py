"""Per-problem latency of local inference, the way a user feels it, against the machine's floors.

    python scripts/bench_inference.py                      # every size, family, backend; 1 and 2 threads
    python scripts/bench_inference.py --sizes reference --families hrm --backends torch,onnx-int8
    python scripts/bench_inference.py --quick              # smoke test: tiny size, 2 problems

A problem is the prefill of a real MBPP prompt (the first --problems test tasks from
$HRM_CODEGEN_DATA_DIR, tokenized with the GPT-2 tokenizer from $HRM_CODEGEN_GPT2_DIR; a
synthetic prompt, with a note, when either is missing) and --new-tokens greedy tokens, batch 1,
no EOS. Reported per configuration: median and p90 latency, time to first token (the prefill),
decode tokens/s, and the peak RSS of a fresh process that ran only that configuration (ONNX
graphs are exported beforehand by this process, so an ONNX row's RSS is onnxruntime's alone).

Models have random weights (speed does not depend on them): acceptance of the speculative rows
is therefore near 0, their worst case. Floors: the arithmetic of one problem at this machine's
measured matmul GFLOP/s, and the weight bytes it reads (every block application reads its
weights once) over the measured copy bandwidth. Writes the table to --output
(docs/results/inference.md; --quick writes only when --output is given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {
    "tiny": dict(hidden_size=64, num_heads=4, H_layers=2, L_layers=2, vocab_size=4096),
    "quickstart": dict(hidden_size=128, num_heads=4, H_layers=2, L_layers=2, vocab_size=4096),
    "reference": dict(hidden_size=512, num_heads=8, H_layers=4, L_layers=4, vocab_size=16384),
}
FAMILIES = ("hrm", "transformer-param", "transformer-compute", "llama")
BACKENDS = ("torch", "compiled", "onnx", "onnx-int8", "speculative")
BACKENDS += ("llamacpp-f16", "llamacpp-q8_0", "llamacpp-q4_K")
# bytes read per weight, for the memory floor (q8_0: 34 bytes per 32 weights; q4_K_M mixes
# 4.5-bit blocks with 6-bit ones for some tensors: ~4.9 bits measured by llama.cpp)
WEIGHT_BYTES = {"onnx-int8": 1.0, "llamacpp-f16": 2.0, "llamacpp-q8_0": 34 / 32}
WEIGHT_BYTES["llamacpp-q4_K"] = 4.9 / 8
MAX_SEQ_LEN = 1024
ROOT = Path(__file__).resolve().parents[1]
DRAFT_LAYERS = 2  # the speculative rows' draft: a 2-layer transformer of the same width


def build_model(family: str, size: str, seed: int = 0):
    """A random model of `family` at `size`; the transformers match the HRM's parameters
    (H + L layers) or its block applications per token (compute)."""
    import torch

    from hrm_codegen.model import (
        HRMConfig,
        HRMForCausalLM,
        TransformerConfig,
        TransformerForCausalLM,
    )

    spec = dict(SIZES[size])
    h_layers, l_layers = spec.pop("H_layers"), spec.pop("L_layers")
    torch.manual_seed(seed)
    common = dict(max_seq_len=MAX_SEQ_LEN, **spec)
    hrm = HRMConfig(H_layers=h_layers, L_layers=l_layers, **common)
    if family == "hrm":
        return HRMForCausalLM(hrm)
    if family == "transformer-param":
        return TransformerForCausalLM(TransformerConfig(n_layers=h_layers + l_layers, **common))
    if family == "transformer-compute":
        applications = hrm.H_cycles * (hrm.L_cycles * l_layers + h_layers)
        return TransformerForCausalLM(TransformerConfig(n_layers=applications, **common))
    if family == "draft":
        return TransformerForCausalLM(TransformerConfig(n_layers=DRAFT_LAYERS, **common))
    if family == "llama":  # transformers' Llama, parameter-matched (H + L layers)
        from hrm_codegen.model.hf_models import HFCausalLM, HFModelConfig

        config = HFModelConfig(model_type="llama", n_layers=h_layers + l_layers, **common)
        return HFCausalLM(config)
    raise ValueError(f"unknown family {family!r}; use {', '.join(FAMILIES)}")


def applied_weights(model) -> tuple[int, int]:
    """(weights applied per token, of which the LM head): every block application counts its
    block's weights once, as the matmuls (2 FLOPs each) and the bytes read per token."""
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    head = count(model.lm_head)
    if getattr(model, "model_type", "") == "llama":
        return sum(count(layer) for layer in model.hf.model.layers) + head, head
    if getattr(model, "model_type", "") == "hrm":
        c = model.config
        per_segment = c.H_cycles * (c.L_cycles * count(model.L_level) + count(model.H_level))
        return per_segment * model.num_segments_eval + head, head
    return sum(count(layer) for layer in model.layers) + head, head


def not_served(family: str, backend: str) -> str | None:
    """Why `backend` does not run `family` (None when it does)."""
    if backend == "speculative" and family != "hrm":
        return "the plan drafts for the HRM"
    if family == "llama" and (backend.startswith("onnx") or backend == "compiled"):
        return "transformers' Llama is not exported to ONNX nor decoded on a static cache here"
    if backend.startswith("llamacpp") and family != "llama":
        return "llama.cpp has no architecture for it"
    if backend.startswith("llamacpp"):
        from hrm_codegen.inference.backends import llama_cpp_missing

        if llama_cpp_missing():
            return "llama-cpp-python is not installed here (pip install -e '.[llamacpp]')"
    return None


def load_prompts(count: int, vocab_size: int) -> tuple[list[list[int]], str]:
    """(prompt token ids, where they come from): MBPP test prompts through the GPT-2 tokenizer,
    else synthetic 128-token prompts; ids are folded into `vocab_size`."""
    data = Path(os.environ.get("HRM_CODEGEN_DATA_DIR", "/work/shared/data"))
    gpt2 = Path(os.environ.get("HRM_CODEGEN_GPT2_DIR", data.parent / "tokenizers" / "gpt2"))
    try:
        if not (data / "mbpp.jsonl").is_file() or not (gpt2 / "vocab.json").is_file():
            raise FileNotFoundError(f"{data}/mbpp.jsonl or {gpt2}/vocab.json")
        from hrm_codegen.data import load_benchmark
        from hrm_codegen.data.prompts import format_prompt
        from hrm_codegen.tokenization import load_tokenizer

        tokenizer = load_tokenizer(gpt2)
        tasks = load_benchmark("mbpp", split="test", path=data / "mbpp.jsonl")[:count]
        prompts = [
            [tokenizer.bos_token_id, *tokenizer.encode(format_prompt(t), add_special_tokens=False)]
            for t in tasks
        ]
        source = f"the first {len(prompts)} MBPP test prompts, GPT-2 tokens"
    except (OSError, ValueError, ImportError) as error:
        prompts = [[(17 * i + 31 * j) % 50257 for j in range(128)] for i in range(count)]
        source = f"synthetic 128-token prompts (MBPP prompts unavailable: {error})"
    return [[t % vocab_size for t in p] for p in prompts], source


# --------------------------------------------------------------------------------- one config


def run_config(spec: dict) -> dict:
    """Time one configuration in this (fresh) process; see the module docstring."""
    import torch

    from hrm_codegen.generation import generate_ids

    torch.set_num_threads(spec["threads"])
    backend, options = spec["backend"], {}
    if backend.startswith("onnx"):
        from hrm_codegen.inference.onnx_runtime import OnnxCausalLM

        model = OnnxCausalLM(spec["onnx_dir"], threads=spec["threads"])
    elif backend.startswith("llamacpp"):
        from hrm_codegen.inference.llamacpp_runtime import LlamaCppCausalLM

        model = LlamaCppCausalLM(
            spec["gguf_path"], max_seq_len=MAX_SEQ_LEN, threads=spec["threads"]
        )
    else:
        model = build_model(spec["family"], spec["size"])
    if backend == "compiled":
        options["compile"] = True
    draft = None
    if backend == "speculative":
        from hrm_codegen.inference.speculative import SpeculativeDraft

        draft = options["draft"] = SpeculativeDraft(
            build_model("draft", spec["size"], seed=1), spec["draft_tokens"]
        )
    prompts = spec["prompts"]
    new_tokens = spec["new_tokens"]

    outputs: list[list[int]] = []

    def one(prompt: list[int]) -> tuple[float, float]:
        first: list[float] = []
        start = time.perf_counter()
        out = generate_ids(
            model,
            [prompt],
            max_new_tokens=new_tokens,
            batch_size=1,
            on_token=lambda *_: first or first.append(time.perf_counter()),
            **options,
        )
        total = time.perf_counter() - start
        assert len(out[0][0]) == new_tokens
        outputs.append(out[0][0])
        return total, first[0] - start

    warm = prompts if backend == "compiled" else prompts[:1]  # compiled: every cache length
    for prompt in warm:
        one(prompt)
    if draft is not None:
        draft.proposed = draft.accepted = draft.target_forwards = draft.generated = 0
    outputs.clear()  # the warm-up's
    latencies, ttfts = zip(*(one(p) for p in prompts))
    decode = [(lat - ttft) for lat, ttft in zip(latencies, ttfts)]
    result = {
        "outputs": outputs,
        "median_s": statistics.median(latencies),
        "p90_s": sorted(latencies)[max(0, round(0.9 * len(latencies)) - 1)],
        "ttft_s": statistics.median(ttfts),
        "tokens_per_s": (new_tokens - 1) * len(decode) / max(sum(decode), 1e-9),
        "peak_rss_mb": peak_rss_mb(),
    }
    if draft is not None:
        result["acceptance"] = draft.acceptance_rate
    return result


def same_as(result: dict, eager: list[list[int]] | None) -> str:
    """How many problems' greedy tokens equal eager torch's (same size, family, threads)."""
    outputs = result.get("outputs")
    if outputs is None or eager is None:
        return ""
    same = sum(a == b for a, b in zip(outputs, eager))
    return f"greedy = torch on {same}/{len(eager)}"


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which exec resets (`ru_maxrss` keeps the
    parent's peak across fork and exec, so a child would report the benchmark's own)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(spec: dict) -> dict:
    """`run_config` in a fresh interpreter, so its peak RSS is its own."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    # the child imports the package of this script's checkout, as this process does
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, __file__, "--child"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=env,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:120]}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------------- floors


def probe_gflops(threads: int) -> float:
    """Float32 matmul GFLOP/s with `threads` threads (best of a few 1024^2 products)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 1024**3 / best / 1e9


def probe_bandwidth() -> float:
    """Memory bandwidth in GB/s: bytes read + written by copying 256 MB (best of a few)."""
    import torch

    source, target = torch.ones(64 * 2**20), torch.empty(64 * 2**20)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        target.copy_(source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.numel() * 4 / best / 1e9


def floors(
    weights: int, prompt_len: float, new_tokens: int, gflops: float, gbps: float, width: float
):
    """(compute floor s, memory floor s) of one problem: prefill and decode arithmetic at
    `gflops`; decode weight bytes (`width` bytes per weight) at `gbps` (a prefill reads the
    weights once per application, negligible beside the decode's once per token)."""
    compute = 2 * weights * (prompt_len + new_tokens) / (gflops * 1e9)
    memory = weights * width * new_tokens / (gbps * 1e9)
    return compute, memory


# --------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="quickstart,reference")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--draft-tokens", type=int, default=4, help="speculative rows' k")
    parser.add_argument("--output", help="markdown file (default docs/results/inference.md)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: tiny HRM, 2 problems, 1 thread"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.families, args.problems, args.threads = "tiny", "hrm", 2, [1]
        args.backends = "torch,onnx,speculative"
    elif args.output is None:
        args.output = "docs/results/inference.md"
    for name, known in (("sizes", SIZES), ("families", FAMILIES), ("backends", BACKENDS)):
        values = getattr(args, name).split(",")
        unknown = [v for v in values if v not in known]
        if unknown:
            parser.error(f"--{name} {','.join(unknown)}: not one of {', '.join(known)}")
        setattr(args, name, values)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_config(json.loads(sys.stdin.read()))))
        return 0
    from hrm_codegen.inference.onnx_runtime import export_onnx

    gbps = probe_bandwidth()
    gflops = {threads: probe_gflops(threads) for threads in args.threads}
    header = (
        "| size | family | backend | threads | median s | p90 s | TTFT s | tok/s | "
        "peak RSS MB | floor s (compute / memory) | note |"
    )
    rows = [header, "|" + "---|" * 11]
    print(header, flush=True)
    sources, skipped = set(), set()
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as scratch:
        for size in args.sizes:
            prompts, source = load_prompts(args.problems, SIZES[size]["vocab_size"])
            sources.add(source)
            mean_prompt = statistics.mean(len(p) for p in prompts)
            for family in args.families:
                model = build_model(family, size)
                weights, _ = applied_weights(model)
                exported, eager = {}, {}  # eager: torch's greedy tokens per thread count
                for backend in args.backends:
                    why = not_served(family, backend)
                    if why:
                        skipped.add(f"{backend} for {family}: {why}")
                        continue
                    folder = Path(scratch) / f"{size}-{family}-{backend}"
                    if backend.startswith("onnx"):
                        quantize = "int8-dynamic" if backend == "onnx-int8" else None
                        exported[backend] = str(export_onnx(model, folder, quantize=quantize))
                    if backend.startswith("llamacpp"):
                        from hrm_codegen.inference.llamacpp_runtime import export_gguf

                        exported[backend] = str(
                            export_gguf(model, None, folder / "model.gguf",
                                        gguf_type=backend.split("-", 1)[1])
                        )  # fmt: skip
                    for threads in args.threads:
                        spec = dict(
                            size=size, family=family, backend=backend, threads=threads,
                            prompts=prompts, new_tokens=args.new_tokens,
                            draft_tokens=args.draft_tokens, onnx_dir=exported.get(backend),
                            gguf_path=exported.get(backend),
                        )  # fmt: skip
                        result = measure(spec)
                        width = WEIGHT_BYTES.get(backend, 4.0)
                        compute, memory = floors(
                            weights, mean_prompt, args.new_tokens, gflops[threads], gbps, width
                        )
                        if backend == "torch":
                            eager[threads] = result.get("outputs")
                        agree = "" if backend == "torch" else same_as(result, eager.get(threads))
                        accept = result.get("acceptance")
                        if accept is not None:
                            accept = f"acceptance {accept:.0%} (random weights)"
                        note = "; ".join(filter(None, [result.get("error"), agree, accept]))
                        cells = [size, family, backend, str(threads)]
                        if "error" in result:
                            cells += ["-"] * 6
                        else:
                            cells += [
                                f"{result['median_s']:.3f}", f"{result['p90_s']:.3f}",
                                f"{result['ttft_s']:.3f}", f"{result['tokens_per_s']:.1f}",
                                f"{result['peak_rss_mb']:.0f}",
                            ]  # fmt: skip
                        cells.insert(9, f"{compute:.3f} / {memory:.3f}")
                        cells = cells[:10] + [note]
                        rows.append("| " + " | ".join(cells) + " |")
                        print(rows[-1], flush=True)
                del model
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; measured "
        f"{', '.join(f'{g:.1f} GFLOP/s with {t} thread(s)' for t, g in gflops.items())}, "
        f"{gbps:.1f} GB/s copy bandwidth"
    )
    notes = [
        f"Prompts: {'; '.join(sorted(sources))}; {args.new_tokens} new tokens, greedy, batch 1.",
        f"Machine: {machine}.",
        "Floors per problem: compute = 2 x weights applied per token x (prompt + new tokens) / "
        "GFLOP/s; memory = weights applied per token x bytes per weight x new tokens / GB/s.",
    ]
    if skipped:
        notes.append(
            "Not measured (the backend cannot serve the model): " + "; ".join(sorted(skipped)) + "."
        )
    for line in notes:
        print(line)
    if args.output:
        command = "python scripts/bench_inference.py " + " ".join(argv or sys.argv[1:])
        text = "\n".join(
            ["# Local inference: latency per problem", "", f"    {command.strip()}", "", *rows, "",
             *notes, ""]
        )  # fmt: skip
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
