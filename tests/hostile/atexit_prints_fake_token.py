# expect: failed
import atexit
import secrets

atexit.register(lambda: print(secrets.token_hex(16)))
assert 1 == 2
