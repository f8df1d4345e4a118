"""`scripts/generate.py`: one prompt in, a completion out as it is generated, optionally judged.

The prompt is free text (positional or `--prompt`), a file (`--file`), or a benchmark task
(`--task mbpp/11`: the exact prompt evaluation uses, from `format_prompt`). `--run` executes the
completion against the task's tests in the evaluation sandbox, the way `scripts/evaluate.py`
judges it, so one problem can be looked at end to end without a whole benchmark run. Models are
loaded through `harness.load_model_and_tokenizer`, so `--model-type`, `--dtype` and `--quantize` mean what
they mean for evaluation. `--backend` picks the engine (`hrm_codegen.inference`: eager torch,
the compiled decode step, ONNX Runtime; `--quantize int8-dynamic` with `onnx` is onnxruntime's
int8) and `--draft CKPT` adds speculative decoding, whose acceptance is printed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from hrm_codegen.data import CodeTask, load_benchmark, normalize_task_id
from hrm_codegen.data.prompts import extract_completion, format_prompt, stop_sequences
from hrm_codegen.data.tasks import canonical_benchmark, program_parts
from hrm_codegen.evaluation import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, USER_ERRORS
from hrm_codegen.evaluation.source import load_draft_from_args
from hrm_codegen.generation import truncate_at_stop
from hrm_codegen.inference.backends import BACKENDS, GGUF_TYPES, check_backend
from hrm_codegen.quantization import QUANTIZE_CHOICES
from hrm_codegen.runtime import apply_threads

_DECODE = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; the sampling flags match scripts/evaluate.py's."""
    from hrm_codegen.model.loading import HF_FAMILY
    from hrm_codegen.model.registry import cli_names

    parser = argparse.ArgumentParser(
        prog="generate.py",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("text", nargs="?", help="the prompt (or use --prompt, --file, --task)")
    source = parser.add_argument_group("prompt (exactly one)")
    source.add_argument("--prompt", help="the prompt text")
    source.add_argument("--file", help="read the prompt from this file")
    source.add_argument(
        "--task", help="a benchmark task, BENCHMARK/ID: mbpp/11, mbpp_sanitized/11, humaneval/0"
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model-type", choices=[*cli_names(), HF_FAMILY], required=True)
    model.add_argument("--ckpt", required=True, help="saved model folder, or a training run folder")
    model.add_argument("--tokenizer", help="tokenizer if not saved with the model (e.g. gpt2)")
    model.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    model.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], default="auto")
    model.add_argument("--quantize", choices=QUANTIZE_CHOICES, help="torchao quantization")
    model.add_argument(
        "--save-quantized", metavar="DIR", help="write the quantized model to DIR (--quantize)"
    )
    model.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch: eager; compiled: torch.compile'd decode step; onnx: ONNX Runtime (int8 with "
        "--quantize int8-dynamic); llamacpp: llama.cpp, --model-type llama only (needs "
        "llama-cpp-python)",
    )
    model.add_argument(
        "--gguf-type",
        choices=GGUF_TYPES,
        help="--backend llamacpp's weights: f32, f16 (default), or llama.cpp's q8_0 / q4_K",
    )
    model.add_argument(
        "--draft",
        metavar="CKPT",
        help="a small model with the same tokenizer: speculative decoding",
    )
    model.add_argument("--draft-tokens", type=int, default=4, help="tokens the draft proposes")
    gen = parser.add_argument_group("generation")
    gen.add_argument("--num-samples", type=int, default=1)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--max-new-tokens", type=int, default=512)
    gen.add_argument("--seed", type=int, default=0)
    run = parser.add_argument_group("execution (--task only)")
    run.add_argument("--run", action="store_true", help="run the completion against the tests")
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    run.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB)
    run.add_argument("--sandbox", choices=["auto", "bwrap", "none-unsafe"], default="auto")
    parser.add_argument(
        "--threads",
        default="auto",
        help="CPU threads for the model: a number, or 'auto' (default: the cores not busy now)",
    )
    return parser.parse_args(argv)


def find_task(spec: str) -> CodeTask:
    """The task `BENCHMARK/ID` names (`mbpp/11`, `HumanEval/0`), from every split."""
    benchmark, _, raw = spec.rpartition("/")
    if not benchmark:
        raise ValueError(f"--task {spec!r}: give BENCHMARK/ID, e.g. mbpp/11 or humaneval/0")
    benchmark = canonical_benchmark(benchmark)
    task_id = normalize_task_id(benchmark, raw)
    for task in load_benchmark(benchmark):
        if task.task_id == task_id:
            return task
    raise ValueError(f"--task {spec!r}: {benchmark} has no task {task_id}")


def resolve_prompt(args: argparse.Namespace) -> tuple[str | None, CodeTask | None]:
    """(prompt text, task or None) from whichever of the four prompt sources was given."""
    given = {
        name: value
        for name, value in (
            ("prompt", args.text),
            ("--prompt", args.prompt),
            ("--file", args.file),
            ("--task", args.task),
        )
        if value is not None
    }
    if len(given) > 1:
        raise ValueError(f"give one prompt source, not {' and '.join(given)}")
    if args.run and args.task is None:
        raise ValueError("--run needs --task: the tests it runs come from the benchmark task")
    if not given:
        if args.save_quantized:
            return None, None  # only writing the quantized model
        raise ValueError("no prompt: pass text, --prompt TEXT, --file PATH or --task mbpp/11")
    if args.task is not None:
        task = find_task(args.task)
        return format_prompt(task), task
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"--file {path} does not exist or is not a file")
        text = path.read_text()
    else:
        text = args.text if args.text is not None else args.prompt
    if not text.strip():
        raise ValueError("the prompt is empty")
    return text, None


class TextStreamer:
    """Writes each sample's text as its tokens arrive, never showing what a stop string will cut.

    A token may end inside a multi-byte character, and the last few characters may be the start
    of a stop string, so the tail that could still change is held back until the sample ends;
    `finish` then writes the rest of exactly the text `generate` returns.
    """

    def __init__(self, tokenizer, stop: list[str], out: TextIO, samples: int):
        self.tokenizer, self.stop, self.out, self.samples = tokenizer, stop, out, samples
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.sample: int | None = None
        self.tokens: list[int] = []
        self.shown = ""
        self.texts: list[str] = []

    def _write(self, text: str) -> None:
        if text.startswith(self.shown) and len(text) > len(self.shown):
            self.out.write(text[len(self.shown) :])
            self.out.flush()
            self.shown = text

    def __call__(self, prompt_index: int, sample_index: int, token: int) -> None:
        if sample_index != self.sample:
            self.finish()
            self.sample = sample_index
            if self.samples > 1:
                print(f"--- sample {sample_index + 1}/{self.samples} ---", file=self.out)
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, **_DECODE)
        if text.endswith("\ufffd"):
            return
        cut = truncate_at_stop(text, self.stop)
        self._write(cut if len(cut) < len(text) else text[: max(0, len(text) - self.hold)])

    def finish(self) -> None:
        """End the current sample: write what was held back (stop strings removed)."""
        if self.sample is None:
            return
        final = truncate_at_stop(self.tokenizer.decode(self.tokens, **_DECODE), self.stop)
        self._write(final)
        self.out.write("\n")
        self.out.flush()
        self.texts.append(final)
        self.sample, self.tokens, self.shown = None, [], ""


def _load(args: argparse.Namespace):
    from hrm_codegen.evaluation.harness import load_model_and_tokenizer

    backend = getattr(args, "backend", "torch")
    onnx = backend == "onnx"
    model, tokenizer = load_model_and_tokenizer(
        args.model_type,
        args.ckpt,
        tokenizer_path=args.tokenizer,
        device=args.device,
        dtype=args.dtype,
        quantize=None if onnx else args.quantize,  # onnx: onnxruntime quantizes the graph
    )
    if backend in ("onnx", "llamacpp"):
        from hrm_codegen.inference.serving import prepare_backend

        model = prepare_backend(
            model, backend, quantize=args.quantize, tokenizer=tokenizer, gguf_type=args.gguf_type
        )
    if args.save_quantized:
        from hrm_codegen.quantization import save_quantized

        if args.model_type == "hf" or args.quantize is None:
            raise ValueError("--save-quantized writes our models quantized: add --quantize")
        folder = save_quantized(model, args.save_quantized)
        tokenizer.save_pretrained(str(folder))  # so --ckpt FOLDER needs no --tokenizer
        print(f"wrote {folder}", file=sys.stderr)
    return model, tokenizer


def generate_completions(
    args: argparse.Namespace,
    model,
    tokenizer,
    prompt: str,
    stop: list[str],
    out: TextIO,
    draft=None,
) -> list[str]:
    """The `--num-samples` generated texts, streamed to `out` (our models) or written when done
    (HF models, which decode inside their own `generate`).

    A progress bar on stderr (tokens, ETA; per token, not per sample) whenever nothing else shows
    that decoding goes on: for HF models, and for ours when `out` is not the terminal (a file,
    a pipe). Text streamed to the terminal is its own progress, and a bar drawn between its
    characters would garble it.
    """
    from hrm_codegen.generation import generate, generate_hf

    streams_to_terminal = args.model_type != "hf" and _is_terminal(out)
    options = dict(
        max_new_tokens=args.max_new_tokens,
        num_samples=args.num_samples,
        do_sample=args.temperature > 0,
        temperature=args.temperature if args.temperature > 0 else 1.0,
        top_p=args.top_p,
        stop=stop or None,
        seed=args.seed,
        progress=_is_terminal(sys.stderr) and not streams_to_terminal,
    )
    if args.model_type == "hf":
        texts = generate_hf(model, tokenizer, [prompt], batch_size=1, **options)[0]
        for index, text in enumerate(texts):
            if args.num_samples > 1:
                print(f"--- sample {index + 1}/{args.num_samples} ---", file=out)
            print(text, file=out)
        return texts
    if getattr(args, "backend", "torch") == "compiled":
        options["compile"] = True
    if draft is not None:
        options["draft"] = draft
    streamer = TextStreamer(tokenizer, stop, out, args.num_samples)
    # batch_size=1: the samples decode one after another, so each streams whole
    texts = generate(model, tokenizer, [prompt], batch_size=1, on_token=streamer, **options)[0]
    streamer.finish()
    if not streamer.texts:  # EOS straight away: nothing was streamed
        for text in texts:
            print(text, file=out)
    return texts


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def judge(args: argparse.Namespace, task: CodeTask, texts: list[str], out: TextIO) -> list[bool]:
    """Run every sample's program against the task's tests in the sandbox; print the verdicts."""
    from hrm_codegen.evaluation.sandbox import SandboxProgram, run_programs

    # Candidate and tests apart: the tests then run against pristine built-ins and compare
    # trusted types only (see the sandbox's docstring), as in evaluate.py.
    programs = [
        SandboxProgram(*program_parts(task, extract_completion(task, text))) for text in texts
    ]
    results = run_programs(
        programs,
        timeout=args.timeout,
        memory_mb=args.memory_mb,
        backend=args.sandbox,
        progress=False,
    )
    for index, result in enumerate(results):
        label = f"sample {index + 1}: " if len(results) > 1 else ""
        detail = f" ({result.detail})" if result.detail and not result.passed else ""
        print(f"{task.task_id} {label}{result.status.upper()}{detail}", file=out)
    return [result.passed for result in results]


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Exit 0 when the completion was generated (and judged, with `--run`, whatever the
    verdict), 2 on bad input."""
    out = out or sys.stdout
    args = parse_args(argv)
    try:
        apply_threads(args.threads)
        if args.num_samples < 1:
            raise ValueError(f"--num-samples {args.num_samples}: give at least 1")
        if args.save_quantized and args.quantize is None:
            raise ValueError("--save-quantized needs --quantize int8|int8-dynamic|int4")
        prompt, task = resolve_prompt(args)
        if args.run:
            from hrm_codegen.evaluation.sandbox import resolve_backend

            resolve_backend(args.sandbox)  # no sandbox: fail before loading the model
        if args.device is None:
            import torch

            args.device = "cuda" if torch.cuda.is_available() else "cpu"
        check_backend(
            args.backend,
            args.model_type,
            device=args.device,
            quantize=args.quantize,
            draft=args.draft is not None,
            gguf_type=args.gguf_type,
        )
        if args.draft is not None and args.temperature > 0:
            raise ValueError("--draft decodes greedily: use --temperature 0")
        if args.backend == "onnx" and args.save_quantized:
            raise ValueError("--save-quantized writes torchao models; not with --backend onnx")
        model, tokenizer = _load(args)
        if prompt is None:
            return 0
        draft = load_draft_from_args(args, tokenizer)
        stop = stop_sequences(task) if task is not None else []
        start = time.perf_counter()
        speculative = {"draft": draft} if draft is not None else {}
        texts = generate_completions(args, model, tokenizer, prompt, stop, out, **speculative)
        seconds = time.perf_counter() - start
        print(f"[generated {len(texts)} sample(s) in {seconds:.2f} s]", file=sys.stderr)
        if draft is not None:
            print(f"[{draft.summary()}]", file=sys.stderr)
        if args.run:
            judge(args, task, texts, out)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
