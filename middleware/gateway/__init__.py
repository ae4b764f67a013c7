"""The gateway: GraphQL (strawberry, graphene) sync subscriptions over the change feed."""
