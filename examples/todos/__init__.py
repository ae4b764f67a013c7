"""The todo lists both mounting examples (`strawberry_app`, `graphene_app`) are about:
their table (`schema.sql`), the app's own data access (`store`), pgsift's config."""

from pathlib import Path

CONFIG = Path(__file__).with_name("pgsift.toml")
