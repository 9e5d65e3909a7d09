#!/usr/bin/env python3
"""How soon the port of a stopped ringloop HTTP server is free again.

Build the example first: cargo build --release --features hyper --example http_server
Then: python3 benches/port_release.py
Starts examples/http_server on 127.0.0.1:8099 (one keep-alive connection open), stops it
with SIGTERM or SIGKILL, and retries bind() every 0.2 ms after the process has exited;
prints the median and max over 10 runs, per driver and signal.
"""
import os
import signal
import socket
import subprocess
import time

ADDR = ("127.0.0.1", 8099)
SERVER = "./target/release/examples/http_server"


def once(sig, driver):
    env = dict(os.environ, RINGLOOP_DRIVER=driver)
    proc = subprocess.Popen([SERVER, "%s:%d" % ADDR], stderr=subprocess.DEVNULL, env=env)
    while True:
        try:
            conn = socket.create_connection(ADDR)
            break
        except OSError:
            time.sleep(0.01)
    conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.recv(1000)
    proc.send_signal(sig)
    if sig == signal.SIGTERM:
        conn.close()
    proc.wait()
    exited = time.monotonic()
    while True:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(ADDR)
            s.listen()
            s.close()
            break
        except OSError:
            s.close()
            time.sleep(0.0002)
    conn.close()
    return (time.monotonic() - exited) * 1000, proc.returncode


for driver in ["io_uring", "epoll"]:
    for sig in [signal.SIGTERM, signal.SIGKILL]:
        runs = [once(sig, driver) for _ in range(10)]
        ms = sorted(r[0] for r in runs)
        codes = sorted(set(r[1] for r in runs))
        print("%-8s %-7s port free after exit: median %.2f ms, max %.2f ms, exit codes %s"
              % (driver, sig.name, ms[len(ms) // 2], ms[-1], codes))
