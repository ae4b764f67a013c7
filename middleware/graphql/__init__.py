"""The typed GraphQL schema in strawberry and graphene, built from one `TypeModel`.

`pgsift.subscriptions.typed_schema` decides every name and type; the modules
here only translate: `scalars` (serialize and parse, shared), `strawberry_types`,
`graphene_types`, and `sdl` (the schema's SDL for a catalog and policies).
"""
