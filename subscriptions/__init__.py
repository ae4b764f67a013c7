"""The pure core of pgsift: SQL text to shapes, predicates, policies and routing."""
