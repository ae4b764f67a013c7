"""The batch loader: on-demand rows by key, batched across callers, kept fresh by the feed."""

from __future__ import annotations

from pgsift.middleware.loader.http import row_json, rows_endpoint, rows_route
from pgsift.middleware.loader.loader import BatchLoader, LoaderStats

__all__ = ["BatchLoader", "LoaderStats", "row_json", "rows_endpoint", "rows_route"]
