# expect: failed
# The program exits 0 early; a daemon it left behind keeps writing token-shaped lines.
import os
import secrets
import time

if os.fork() == 0:
    os.setsid()
    for _ in range(100):
        time.sleep(0.01)
        try:
            os.write(1, f"\n{secrets.token_hex(16)}\n".encode())
        except OSError:
            break
    os._exit(0)
time.sleep(0.05)
os._exit(0)
