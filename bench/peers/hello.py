"""A bare tornado hello-world: the ceiling for a tornado server on this machine.

``python hello.py PORT [uvloop]``: on asyncio's own event loop, or on uvloop.
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
    if sys.argv[2:] == ["uvloop"]:
        import uvloop

        uvloop.run(main(int(sys.argv[1])))
    else:
        asyncio.run(main(int(sys.argv[1])))
