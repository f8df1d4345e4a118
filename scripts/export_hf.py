"""Export a checkpoint as a Hugging Face folder that loads with trust_remote_code, without hrm_codegen.

python scripts/export_hf.py --ckpt runs/quickstart --out exports/quickstart-hf

The folder holds config.json (auto_map), model.safetensors, the tokenizer and the modeling code;
load it with AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True). See
hrm_codegen/export/__init__.py.
"""

import sys

from hrm_codegen.export import main

if __name__ == "__main__":
    sys.exit(main())
