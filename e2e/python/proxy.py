"""A fault-injecting Kafka TCP proxy for tests: forwards frames both ways and, on request, drops
the response to a Produce request after the broker has handled it (closing the client's
connection), so the client must retry a request the broker already appended."""

import socket
import struct
import threading

PRODUCE = 0


def _read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _read_frame(sock):
    head = _read_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    body = _read_exact(sock, size)
    return None if body is None else head + body


class FaultProxy:
    """Listens on `port` and forwards to the broker at `target_port` (both on 127.0.0.1)."""

    def __init__(self, port, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(16)
        self.drop_produce_responses = 0
        self.dropped = 0
        self.lock = threading.Lock()
        self.on_drop = None  # called (in the proxy thread) after a response was dropped
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        pending = {}  # correlation id -> api key

        def up():
            while True:
                try:
                    frame = _read_frame(client)
                except OSError:
                    break
                if frame is None:
                    break
                api, _ver, corr = struct.unpack(">hhi", frame[4:12])
                pending[corr] = api
                try:
                    upstream.sendall(frame)
                except OSError:
                    break
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=up, daemon=True).start()
        while True:
            try:
                frame = _read_frame(upstream)
            except OSError:
                break
            if frame is None:
                break
            (corr,) = struct.unpack(">i", frame[4:8])
            if pending.pop(corr, None) == PRODUCE:
                with self.lock:
                    drop = self.drop_produce_responses > 0
                    if drop:
                        self.drop_produce_responses -= 1
                        self.dropped += 1
                if drop:
                    if self.on_drop:
                        self.on_drop()
                    break
            try:
                client.sendall(frame)
            except OSError:
                break
        # shutdown before close: a close alone does not reach the peer while the other thread
        # is still blocked reading the same socket.
        for s in (client, upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for s in (client, upstream):
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.listener.close()
