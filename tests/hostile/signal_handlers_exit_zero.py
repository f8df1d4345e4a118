# expect: failed, timeout
# Every catchable signal a harness might send (and an alarm the program sets) exits 0.
import os
import signal

for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU, signal.SIGALRM):
    signal.signal(sig, lambda *args: os._exit(0))
signal.alarm(1)
while True:
    pass
