"""A TCP forwarder that can be cut and restored: a network fault between two processes.

    proxy = Proxy(5432)                  # listens on 127.0.0.1:<free port>, forwards to :5432
    proxy.start()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/db"
    ...
    proxy.cut()       # every open connection is reset; new ones are refused
    proxy.restore()   # accepts again on the same port
    proxy.stop()

Clients connect to `proxy.port` instead of the server's port. While cut, the proxy has no
listening socket (a connect gets "connection refused" at once, as from a server that is
down) and every connection it was carrying is closed with a reset on both sides, so a
client in the middle of a request sees it fail rather than hang. The server keeps running
and keeps its state (a moto S3 server, say, would lose its buckets if it were stopped).

`watch`, if given, is called with each chunk a client sends, before the chunk is
forwarded; it may call `cut()`, and then the chunk is dropped. That cuts the connection
at a precise point of a protocol (for example when an HTTP request for a given path
begins). It runs in the proxy's threads: keep it quick.

Threads: one accepting, two per connection (one per direction).
"""

import socket
import struct
import threading
from collections.abc import Callable

from bench.processes import free_port

CHUNK = 64 * 1024


def _reset(sock: socket.socket) -> None:
    """Close a socket with a TCP reset (linger 0), not an orderly end of stream; a thread
    blocked reading it wakes up."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # already closed, or never connected
    sock.close()


class Proxy:
    """Forward 127.0.0.1:`port` to `target_host`:`target_port`, until cut."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1",
                 watch: Callable[[bytes], None] | None = None, port: int | None = None):
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.watch = watch
        self.connections = 0  # accepted since start
        self.resets = 0       # open connections closed by cut()
        self._lock = threading.Lock()
        # open connections -> how many of their two directions have ended
        self._open: dict[tuple[socket.socket, socket.socket], int] = {}
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._closing = threading.Event()

    @property
    def is_cut(self) -> bool:
        """True between cut() and restore() (and before start())."""
        return self._listener is None

    def start(self) -> "Proxy":
        """Listen and forward."""
        with self._lock:
            if self._listener is not None:
                return self
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(128)
            listener.settimeout(0.1)  # the accept loop notices a cut within 0.1 s
            self._listener, self._closing = listener, threading.Event()
            self._accepting = threading.Thread(target=self._accept, args=(listener,),
                                               daemon=True, name=f"proxy-{self.port}")
            self._accepting.start()
        return self

    restore = start

    def cut(self) -> int:
        """Refuse new connections and reset the open ones; returns how many were open."""
        with self._lock:
            listener, self._listener = self._listener, None
            if listener is not None:
                self._closing.set()
            pairs, self._open = list(self._open), {}
            self.resets += len(pairs)
        accepting = self._accepting
        if accepting is not None and accepting is not threading.current_thread():
            accepting.join(timeout=5)
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)
        return len(pairs)

    stop = cut

    def _accept(self, listener: socket.socket) -> None:
        """Accept until cut, then close the listening socket (connects are refused)."""
        closing = self._closing
        try:
            while not closing.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                self._connect(client)
        finally:
            listener.close()

    def _connect(self, client: socket.socket) -> None:
        """Open the upstream connection for a new client and start both pumps."""
        client.settimeout(None)
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)  # the server itself is down: the client sees that
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = (client, upstream)
        with self._lock:
            if self._listener is None:  # cut while connecting
                _reset(client)
                _reset(upstream)
                return
            self._open[pair] = 0
            self.connections += 1
        for source, sink, watch in ((client, upstream, self.watch), (upstream, client, None)):
            threading.Thread(target=self._pump, args=(pair, source, sink, watch),
                             daemon=True, name=f"proxy-{self.port}-pump").start()

    def _pump(self, pair, source: socket.socket, sink: socket.socket, watch) -> None:
        """Copy one direction until end of stream or a cut."""
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    sink.shutdown(socket.SHUT_WR)  # pass the end of stream on
                    self._ended(pair)
                    return
                if watch is not None:
                    watch(data)
                with self._lock:
                    if pair not in self._open:
                        return  # cut: this chunk is dropped
                sink.sendall(data)
        except OSError:
            self._close(pair)

    def _ended(self, pair) -> None:
        """One direction reached its end of stream; close the sockets after both have."""
        with self._lock:
            if pair not in self._open:
                return
            self._open[pair] += 1
            if self._open[pair] < 2:
                return
            del self._open[pair]
        for sock in pair:
            sock.close()

    def _close(self, pair) -> None:
        """Close both ends of a connection that failed on one side."""
        with self._lock:
            if pair not in self._open:
                return
            del self._open[pair]
        for sock in pair:
            _reset(sock)
