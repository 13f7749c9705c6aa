"""Development tools, not needed on the line: the embedded broker, the frame simulator, a local webhook receiver.

Nothing outside this package (and the CLI commands it registers) imports it; the line image leaves it out.
"""
