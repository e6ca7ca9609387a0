"""A ProxyCommand for the tests: relay stdin/stdout to HOST:PORT and leave a mark that it ran.

Usage: tcp_proxy.py HOST PORT MARKFILE
"""
import os
import socket
import sys
import threading

host, port, mark = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(mark, "a") as stream:
    stream.write(f"{host}:{port}\n")
sock = socket.create_connection((host, port), timeout=10)
sock.settimeout(None)


def upstream():
    while data := os.read(0, 65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


threading.Thread(target=upstream, daemon=True).start()
while data := sock.recv(65536):
    os.write(1, data)
