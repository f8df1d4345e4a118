# expect: timeout, failed
# needs: bwrap, process-limit
import contextlib
import threading
import time

while True:
    with contextlib.suppress(RuntimeError):
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
