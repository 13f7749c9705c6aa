"""The defect review web page (`lineguard review serve`): FastAPI, server-rendered pages, a little plain script.

Needs the `review` extra (FastAPI, uvicorn, Jinja2); the line image runs without it.
"""
