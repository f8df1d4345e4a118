# expect: failed
import sys
import threading

thread = threading.Thread(target=sys.exit, args=(0,))
thread.start()
thread.join()
assert 1 == 2
