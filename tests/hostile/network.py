# expect: passed
# needs: bwrap
# Passes only if no connection can be made.
import socket

connected = []
for address in [("127.0.0.1", int("__PORT__")), ("1.1.1.1", 80), ("8.8.8.8", 53)]:
    try:
        with socket.create_connection(address, timeout=1) as conn:
            conn.sendall(b"escaped")
            connected.append(address)
    except OSError:
        pass
try:
    socket.getaddrinfo("example.com", 80)
    connected.append("dns")
except OSError:
    pass
assert not connected, connected
