# expect: failed
# A forked child takes the branch that passes and runs the tests to the end; the parent, whose
# branch fails, waits for it and exits 0. Only the process that started the program may pass.
import os


def answer():
    child = os.fork()
    if child == 0:
        return 2
    os.waitpid(child, 0)
    os._exit(0)


assert answer() == 2
