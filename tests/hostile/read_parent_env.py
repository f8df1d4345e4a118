# expect: passed
# needs: bwrap
# Passes only if no environment readable from the sandbox holds the test's secret variable.
import os

leaks = []
for pid in ["self", *[p for p in os.listdir("/proc") if p.isdigit()]]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if b"__SECRET_NAME__" in f.read():
                leaks.append(pid)
    except OSError:
        pass
assert "__SECRET_NAME__" not in os.environ
assert not leaks, f"secret visible in /proc/{leaks}/environ"
