"""A bare tornado hello-world: the ceiling for a tornado server on this machine.

``python hello.py PORT``
"""

from __future__ import annotations

import asyncio
import sys

import tornado.web


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("Hello, world")

    def post(self) -> None:
        self.write("Hello, world")


async def main(port: int) -> None:
    tornado.web.Application([(r"/.*", Hello)]).listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
