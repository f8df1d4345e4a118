# expect: failed
# needs: bwrap
# __DECOY_DIR__ sits inside the repository, __HOME_DECOY__ in $HOME: neither may change.
import os
import shutil
import sys
from pathlib import Path

attempts = [
    lambda: Path("__DECOY_DIR__/decoy.txt").write_text("overwritten"),
    lambda: os.remove("__DECOY_DIR__/decoy.txt"),
    lambda: os.rename("__DECOY_DIR__/decoy.txt", "__DECOY_DIR__/moved.txt"),
    lambda: Path("__DECOY_DIR__/planted.txt").write_text("planted"),
    lambda: shutil.rmtree("__DECOY_DIR__"),
    lambda: Path("__HOME_DECOY__").write_text("overwritten"),
    lambda: os.remove("__HOME_DECOY__"),
]
for attempt in attempts:
    try:
        attempt()
        print("SUCCEEDED", file=sys.stderr)
    except OSError as error:
        print("blocked:", error, file=sys.stderr)
raise SystemExit(1)
