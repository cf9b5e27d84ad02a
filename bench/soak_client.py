"""The soak test's client process (bench/soak.py starts it): API clients streaming chats, and one hostile
client sending issue 27's requests in a loop, until the time or the count is up. Standard library only, so
what the clients cost is not the server's. One JSON line per request on stdout.

    python bench/soak_client.py --port P --seconds S --api-clients N --chat-model M --tokens T --max-requests R
"""
from __future__ import annotations

import argparse
import http.client
import json
import socket
import threading
import time

MESSAGES = [{"role": "user", "content": "Tell me a short story about a lighthouse."}]


def chat_once(port: int, model: str, tokens: int) -> dict:
    started = time.time()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(
            {"model": model, "messages": MESSAGES, "max_tokens": tokens, "stream": True}),
            {"Content-Type": "application/json"})
        response = conn.getresponse()
        ttft = None
        if response.status == 200:
            while line := response.readline():
                if line.startswith(b"data: {") and b'"content":"' in line and ttft is None:
                    ttft = time.time() - started
                if line.startswith(b"data: [DONE]"):
                    break
        else:
            response.read()
        return {"t": started, "kind": "chat", "status": response.status, "ttft": ttft}
    except OSError as exc:
        return {"t": started, "kind": "chat", "status": 0, "error": type(exc).__name__}
    finally:
        conn.close()


def _raw(port: int, head: bytes, pieces=()) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        try:
            for piece in pieces:
                sock.sendall(piece)
        except OSError:
            pass   # answered and closed before the rest: as it should
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0


def hostile_once(port: int, model: str, i: int) -> tuple[str, int, int]:
    """One hostile request of the cycle -> (name, expected status, status)."""
    def post(body: dict, host: str = f"127.0.0.1:{port}") -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json",
                                                                         "Host": host})
        status = conn.getresponse().status
        conn.close()
        return status

    step = i % 6
    if step == 0:
        return "made-up model", 404, post({"model": f"soak-made-up-{i}", "messages": MESSAGES})
    if step == 1:
        return "20 MB declared", 413, _raw(port, (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                  "Content-Type: application/json\r\nContent-Length: 20000000\r\n\r\n"
                                                  ).encode())
    if step == 2:
        return "foreign Host", 400, post({"model": model, "messages": MESSAGES}, host="attacker.example")
    if step == 3:
        return "5 stop strings", 400, post({"model": model, "messages": MESSAGES, "stop": list("abcde")})
    if step == 4:
        return "long stop string", 400, post({"model": model, "messages": MESSAGES, "stop": ["x" * 50_000]})
    if i % 60 == 5:   # every tenth cycle: 20 MB with no Content-Length (chunked), refused as it passes the limit
        piece = b"x" * 65536
        chunks = (b"%x\r\n" % len(piece) + piece + b"\r\n" for _ in range(320))
        return "20 MB chunked", 413, _raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                          b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", chunks)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    size = len(response.read())
    conn.close()
    return "metrics scrape", 200, response.status if size < 200_000 else 999


def client_main(args) -> None:
    """Streams chats from `--api-clients` threads and one hostile thread until the time or the count is up;
    one JSON line per request on stdout."""
    deadline = time.time() + args.seconds
    out_lock, count = threading.Lock(), [0]

    def emit(record: dict) -> bool:
        with out_lock:
            print(json.dumps(record), flush=True)
            count[0] += 1
            return count[0] < args.max_requests

    def chatter():
        while time.time() < deadline and emit(chat_once(args.port, args.chat_model, args.tokens)):
            pass

    def hostile():
        i = 0
        while time.time() < deadline:
            started = time.time()
            try:
                name, expected, status = hostile_once(args.port, args.chat_model, i)
            except OSError as exc:
                name, expected, status = f"cycle {i % 6} ({type(exc).__name__})", -1, 0
            if not emit({"t": started, "kind": "hostile", "name": name, "expected": expected, "status": status}):
                return
            i += 1
            time.sleep(0.2)

    threads = [threading.Thread(target=chatter) for _ in range(args.api_clients)] + [threading.Thread(target=hostile)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--api-clients", type=int, default=8)
    parser.add_argument("--chat-model", required=True)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--max-requests", type=int, default=200_000)
    client_main(parser.parse_args())


if __name__ == "__main__":
    main()
