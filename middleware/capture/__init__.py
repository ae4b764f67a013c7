"""Change capture: a logical replication slot (pgoutput) into the Redis feed."""
