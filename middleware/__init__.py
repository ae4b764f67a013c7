"""Everything of pgsift that touches a socket: capture, feed, gateway, loader, CLI."""
