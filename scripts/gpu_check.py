"""One timed check of a GPU machine (at most 9 minutes on one H200); logic in hrm_codegen/gpu_check/.

    python scripts/gpu_check.py --out gpu_check --data-dir runs/gpu_check_data
    python scripts/gpu_check.py --device cpu --tiny --out /tmp/gpu_check    # toy sizes, a CPU

Writes gpu_check.json and gpu_check.md to --out after every step. The repository root is put on
the import path, so a lent machine runs this from a plain copy of the tree, without installing it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrm_codegen.gpu_check import main  # noqa: E402

if __name__ == "__main__":
    main()
