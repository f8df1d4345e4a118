# expect: failed
exit(0)
assert 1 == 2
