"""RQ background jobs of pgsift: bootstrap dumps, cache warming, feed trimming."""
