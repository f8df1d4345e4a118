# expect: failed
# entry: one
import sys


def tracer(frame, event, arg):
    # Jump over every assert of the program: the line after it runs instead.
    if event == "line" and frame.f_code.co_filename.endswith("program.py"):
        with open(frame.f_code.co_filename) as f:
            lines = f.read().splitlines()
        if lines[frame.f_lineno - 1].startswith("assert"):
            frame.f_lineno = frame.f_lineno + 1
    return tracer


sys.settrace(tracer)
sys._getframe().f_trace = tracer  # this frame too: it runs the tests in one-file mode


def one():
    return 2


# ---- tests ----
assert one() == 1
pass
