"""Generate a completion for one prompt, streamed as it is decoded; optionally run its tests.

    python scripts/generate.py --model-type hrm --ckpt runs/quickstart --task mbpp/11 --run
    python scripts/generate.py --model-type hrm --ckpt runs/quickstart --quantize int8 "def add(a, b):"
    python scripts/generate.py --model-type hrm --ckpt runs/quickstart --file prompt.py \\
        --temperature 0.8 --top-p 0.95 --num-samples 3
    python scripts/generate.py --model-type hrm --ckpt runs/quickstart --quantize int8 \\
        --save-quantized runs/quickstart-int8      # then --ckpt runs/quickstart-int8 loads it quantized

The logic lives in hrm_codegen/generate_cli.py.
"""

import sys

from hrm_codegen.generate_cli import main

if __name__ == "__main__":
    sys.exit(main())
