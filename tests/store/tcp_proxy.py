"""A tiny TCP forwarder, run as its own process by the store tests.

    python tests/store/tcp_proxy.py [--stall-after=BYTES] LISTEN_PORT TARGET_PORT [CERT_PEM KEY_PEM]

Killing it cuts every connection through it while the S3 server behind it (and its
state) lives on: a network outage, not a data loss. With a certificate and key it
terminates TLS (the server behind it speaks plain HTTP), as an HTTPS MinIO would look to a
client. Prints ``ready`` once listening.

``--stall-after=BYTES`` stops forwarding the server's side of each connection after that
many bytes (the connection stays open, nothing more arrives), so a client can never have
more than BYTES of a response buffered when the proxy is killed: the drop is then a short
read whatever the loopback socket buffers hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int | None = None) -> None:
    try:
        while data := await reader.read(1 << 16):
            if limit is not None:
                data = data[:limit]
                limit -= len(data)
            writer.write(data)
            await writer.drain()
            if limit == 0:
                await asyncio.Event().wait()  # stalled: nothing more until the proxy is killed
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _main(
    listen_port: int, target_port: int, tls: ssl.SSLContext | None = None, stall_after: int | None = None
) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w, stall_after))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, reuse_address=True, ssl=tls)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def _tls(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


if __name__ == "__main__":
    args = sys.argv[1:]
    stall = next((int(a.split("=", 1)[1]) for a in args if a.startswith("--stall-after=")), None)
    args = [a for a in args if not a.startswith("--stall-after=")]
    context = _tls(args[2], args[3]) if len(args) == 4 else None
    asyncio.run(_main(int(args[0]), int(args[1]), context, stall))
