# expect: timeout, passed
# needs: bwrap
# Stops the sandbox's init (pid 1) with ptrace, so the sandbox cannot end by itself; the
# evaluator must still end it on time.
import ctypes

ctypes.CDLL(None).ptrace(16, 1, None, None)  # PTRACE_ATTACH
