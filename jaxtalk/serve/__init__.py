"""The live web demo: `python -m jaxtalk.serve`, then open the page it prints.

Pick a portrait (the demo's, or upload one), speak into the microphone or pick an audio file, and
the talking head answers live in the page, frame by frame with its sound; at the end the page
links to the mp4 of the session. One model serves every connection.

    protocol.py    the WebSocket messages, their limits and errors (read this first)
    app.py         the FastAPI app: routes, downloads, /stats, the uvicorn server
    connection.py  one WebSocket: receive -> model -> send, through bounded queues
    session.py     one streaming session: frames as audio arrives, the mp4 written alongside
    engine.py      the shared model, its lock, blocking calls off the event loop
    portraits.py   the demo portrait and recent uploads, framed as the model expects
    static/        the page: index.html and client.js (microphone, file, playback)
"""
