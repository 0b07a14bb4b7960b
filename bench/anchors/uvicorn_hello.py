"""Bare ASGI hello world: the plain-Python anchor for the hello benchmark.

Run by bench/hello.py as
    python -m uvicorn --loop uvloop --http httptools --no-access-log --workers 1 \
        --app-dir bench/anchors uvicorn_hello:app
No framework, no routing: every HTTP request gets a constant 12-byte body with the
same content-type workerd's `new Response("Hello world!")` sends.
"""

BODY = b"Hello world!"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/plain;charset=UTF-8"),
        (b"content-length", str(len(BODY)).encode()),
    ],
}
BODY_MSG = {"type": "http.response.body", "body": BODY}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send(START)
    await send(BODY_MSG)
