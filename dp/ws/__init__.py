"""The WebSocket frame pipeline: sans-I/O, frame by frame, between a client and its upstream.

- `frames` — one `FrameReader` per direction: bytes in, validated wire frames out (RFC 6455
  framing, close codes, UTF-8 across fragments, the per-message payload limit).
- `pdk` — `kong.websocket.client` / `kong.websocket.upstream` for the frame handlers.
- `pipeline` — `FramePipeline`: feed bytes from either side, run the handlers, collect what to
  write to each side and whether the pair is done.

Nothing here does I/O; `dp/proxy/websocket.py` owns the sockets, timeouts and back-pressure.
The WebSocket plugins (websocket-size-limit, websocket-validator) live in `dp/plugins/`.
"""

from dp.ws.frames import FrameReader, WsError
from dp.ws.pdk import WsKong
from dp.ws.pipeline import FramePipeline, Handler

__all__ = ["FramePipeline", "FrameReader", "Handler", "WsError", "WsKong"]
