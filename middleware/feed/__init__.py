"""The Redis change feed: one stream per database, one entry per committed transaction."""
