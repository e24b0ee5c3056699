"""asyncio transports: thin adapters that move bytes between sockets and the endpoint."""
