"""Bootstrap dumps: their format, where they are stored, their leases, build requests.

Workers (`pgsift.workers`) build dumps; the gateway only reads them (through
`pgsift.middleware.bootstrap`). Both sides need the format and the store, so
they live here, below the workers.
"""
