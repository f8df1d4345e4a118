"""Hydra overrides the launcher adds for processes that must not create a run dir of their own."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

# Keep Hydra from writing .hydra/ and a log file, and point its run dir at the current folder.
NO_OUTPUT = ("hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=none")
TRUE = {"true", "True", "1", "yes"}


def extra_hydra_overrides(args: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """Overrides to append to the command line.

    - `dry_run=true` writes nothing, so Hydra must not create a timestamped run dir either.
    - Under `accelerate launch` / torchrun, processes other than rank 0 would each create their own
      run dir (`${now:}` can differ by a second); rank 0 owns the run dir and tells the others.
    """
    env = os.environ if env is None else env
    dry_run = any(
        arg.split("=", 1)[0].lstrip("+") == "dry_run" and arg.split("=", 1)[-1] in TRUE
        for arg in args
    )
    worker = int(env.get("RANK", "0") or 0) > 0
    if not (dry_run or worker):
        return []
    user_set = {arg.split("=", 1)[0] for arg in args}
    return [o for o in NO_OUTPUT if o.split("=", 1)[0] not in user_set]
