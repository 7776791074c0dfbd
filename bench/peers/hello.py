"""A bare tornado hello-world: the ceiling for a tornado server on this machine.

``python hello.py PORT [uvloop] [processes=N]``: on asyncio's own event loop or on uvloop, in one
process or in N processes forked after binding the port (as ``modelserver --workers N`` shares it).
"""

from __future__ import annotations

import asyncio
import socket
import sys

import tornado.httpserver
import tornado.netutil
import tornado.process
import tornado.web


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("Hello, world")

    def post(self) -> None:
        self.write("Hello, world")


async def main(sockets: list[socket.socket]) -> None:
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/.*", Hello)]))
    server.add_sockets(sockets)
    await asyncio.Event().wait()


if __name__ == "__main__":
    port, words = int(sys.argv[1]), sys.argv[2:]
    processes = next((int(w.split("=", 1)[1]) for w in words if w.startswith("processes=")), 1)
    sockets = tornado.netutil.bind_sockets(port, "127.0.0.1")
    if processes > 1:
        tornado.process.fork_processes(processes, max_restarts=0)
    if "uvloop" in words:
        import uvloop

        uvloop.run(main(sockets))
    else:
        asyncio.run(main(sockets))
