"""Bootstrap dumps: their format, where they are stored, and the HTTP endpoint serving them.

Workers (`pgsift.workers`) build dumps; the gateway only reads them. Both sides
need the format and the store, so they live here, below the workers.
"""
