# expect: failed
# Every 16-byte bytes object and 32-character hex string reachable from the stack frames or the
# garbage collector, printed as candidate tokens; the token must not exist in clear yet.
import gc
import os
import re
import sys

seen = set()
frame = sys._getframe()
values = []
while frame is not None:
    values += list(frame.f_locals.values()) + list(frame.f_globals.values())
    frame = frame.f_back
for obj in gc.get_objects():
    if isinstance(obj, dict):
        values += list(obj.values())
for value in values:
    if isinstance(value, bytes) and len(value) == 16:
        seen.add(value.hex())
    elif isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value):
        seen.add(value)
print("\n".join(sorted(seen)), flush=True)
os._exit(0)
