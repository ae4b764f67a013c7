"""Redis key names of dumps, shape popularity and the workers, as templates in one place.

{0} is the database name in a hash tag (like the feed's keys), so one
database's keys share a Redis Cluster slot and MULTI can span them.
"""

from __future__ import annotations

# Sorted set: dump id -> built_at, of the COMPLETE dumps of one shape ({1}).
# A dump becomes visible only by being added here, atomically with its meta.
# RQ queues: dump builds; warming and feed trimming.
DUMPS_QUEUE = "pgsift-dumps"
MAINTENANCE_QUEUE = "pgsift-maintenance"
QUEUES = (DUMPS_QUEUE, MAINTENANCE_QUEUE)

DUMP_INDEX = "pgsift:{{{0}}}:dumps:{1}"
# Set of shape keys that have (or had) dumps in Redis.
DUMP_SHAPES = "pgsift:{{{0}}}:dumps"
# String: JSON {"header": ..., "trailer": ...} of dump {1}.
DUMP_META = "pgsift:{{{0}}}:dump:{1}:meta"
# Hash: chunk number -> compressed body chunk of dump {1}; expires while building.
DUMP_BODY = "pgsift:{{{0}}}:dump:{1}:body"
# Lock held by the one build of shape {1} running now (redis-py Lock).
BUILD_LOCK = "pgsift:{{{0}}}:dumps:{1}:lock"
# Set while a build of shape {1} is queued, so a burst of bootstraps enqueues one.
BUILD_PENDING = "pgsift:{{{0}}}:dumps:{1}:pending"
# Sorted set: dump id -> lease expiry (Unix time) while a gateway serves it.
DUMP_LEASES = "pgsift:{{{0}}}:dumps:leases"
# Set (with an expiry) once dump {1} is claimed for dropping: no gateway serves it.
DUMP_DROPPING = "pgsift:{{{0}}}:dump:{1}:dropping"
# Sorted set: shape key -> bootstraps/subscriptions (the most counted only).
POPULAR_SHAPES = "pgsift:{{{0}}}:shapes:popular"
# Hash: shape key -> JSON spec {"query", "params", "claims"} of the shapes in POPULAR_SHAPES.
POPULAR_SPECS = "pgsift:{{{0}}}:shapes:popular:specs"
# Held by the one worker whose scheduler enqueues warm builds and trims.
SCHEDULER_LOCK = "pgsift:{{{0}}}:workers:scheduler"

# The key of each template: `dump_index(database, shape_key)` and so on.
dump_index = DUMP_INDEX.format  # (database, shape_key)
dump_shapes = DUMP_SHAPES.format  # (database)
dump_meta = DUMP_META.format  # (database, dump_id)
dump_body = DUMP_BODY.format  # (database, dump_id)
build_lock = BUILD_LOCK.format  # (database, shape_key)
build_pending = BUILD_PENDING.format  # (database, shape_key)
dump_leases = DUMP_LEASES.format  # (database)
dump_dropping = DUMP_DROPPING.format  # (database, dump_id)
popular_shapes = POPULAR_SHAPES.format  # (database)
popular_specs = POPULAR_SPECS.format  # (database)
scheduler_lock = SCHEDULER_LOCK.format  # (database)
