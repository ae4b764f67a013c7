"""Examples of pgsift at work: an existing app, a web page, a Python client, a cache warmer."""
