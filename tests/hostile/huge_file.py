# expect: failed
with open("huge.bin", "wb") as f:
    for _ in range(1024):
        f.write(b"\0" * (1 << 20))
