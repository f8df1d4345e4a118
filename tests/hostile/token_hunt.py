# expect: failed
# Looks everywhere a harness might have left its secret and prints every candidate last.
import contextlib
import os
import re
import sys

found = []
texts = [" ".join(sys.argv), " ".join(f"{k}={v}" for k, v in os.environ.items())]
for path in ["/proc/self/cmdline", "/proc/self/environ", "/proc/1/cmdline", "/proc/1/environ"]:
    try:
        with open(path, "rb") as f:
            texts.append(f.read().decode(errors="replace"))
    except OSError:
        pass
texts.append(sys.stdin.read())
for folder in {os.getcwd(), "/tmp"}:
    for name in os.listdir(folder):
        try:
            with open(os.path.join(folder, name), errors="replace") as f:
                texts.append(f.read())
        except OSError:
            pass
for fd in range(3, 256):
    with contextlib.suppress(OSError):
        texts.append(os.read(fd, 1 << 16).decode(errors="replace"))
for text in texts:
    found += re.findall(r"\b[0-9a-f]{32}\b", text)
print("\n".join(found))
os._exit(0)
