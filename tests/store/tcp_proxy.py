"""A tiny TCP forwarder, run as its own process by the store tests.

    python tests/store/tcp_proxy.py LISTEN_PORT TARGET_PORT [CERT_PEM KEY_PEM]

Killing it cuts every connection through it while the S3 server behind it (and its
state) lives on: a network outage, not a data loss. With a certificate and key it
terminates TLS (the server behind it speaks plain HTTP), as an HTTPS MinIO would look to a
client. Prints ``ready`` once listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _main(listen_port: int, target_port: int, tls: ssl.SSLContext | None = None) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, reuse_address=True, ssl=tls)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def _tls(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


if __name__ == "__main__":
    context = _tls(sys.argv[3], sys.argv[4]) if len(sys.argv) == 5 else None
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2]), context))
