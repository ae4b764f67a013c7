"""Bootstrapping a client: a shape's rows at a known feed position, from Postgres or a dump.

`sources.RowSource` is the one seam: `sync` (gateway sessions), `GET /v1/bootstrap`
(`http.py`) and the workers' dump builds all read their rows through it. Under it:
`snapshot.py` takes every snapshot, `finder.py` finds (and leases) every dump
served, `cursor.py` is the bootstrap cursor (feed position + MVCC snapshot),
`layout.py` what a bootstrap says about a shape's columns, `encoder.py` the
NDJSON row lines.
"""
