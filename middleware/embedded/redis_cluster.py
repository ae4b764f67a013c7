"""A throwaway Redis Cluster: three masters (`redis-server --cluster-enabled yes`), no replicas.

Formed from Python as `redis-cli --cluster create ... --cluster-replicas 0`
would: every node takes an even share of the 16384 hash slots (CLUSTER
ADDSLOTS) and meets the first one (CLUSTER MEET); it is ready once every node
says `cluster_state:ok` and knows them all. Connect with `.url`
(`redis+cluster://`, pgsift's name for redis-py's cluster client).
"""

from __future__ import annotations

import socket

import redis

from pgsift.middleware.embedded.ports import free_port, wait_until
from pgsift.middleware.embedded.redis import EmbeddedRedis
from pgsift.middleware.embedded.server import EmbeddedServer

HASH_SLOTS = 16384
# Redis < 7 has no `cluster-port`: a node's cluster bus listens on its port + 10000.
BUS_PORT_OFFSET = 10000
NODE_TIMEOUT_MS = 5000


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + BUS_PORT_OFFSET > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + BUS_PORT_OFFSET))
            except OSError:
                continue
        return port


class EmbeddedRedisCluster(EmbeddedServer):
    """A cluster of `masters` nodes; see the module docstring."""

    def __init__(self, *, masters: int = 3) -> None:
        args = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        )
        self.nodes = [EmbeddedRedis(port=free_cluster_port(), args=args) for _ in range(masters)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def _launch(self) -> None:
        for node in self.nodes:
            node.start()
        self._form()
        wait_until(self._formed, what="embedded Redis Cluster")

    def _form(self) -> None:
        share = -(-HASH_SLOTS // len(self.nodes))
        for index, node in enumerate(self.nodes):
            with self._client(node) as client:
                slots = range(index * share, min((index + 1) * share, HASH_SLOTS))
                client.execute_command("CLUSTER ADDSLOTS", *slots)
                if index:
                    client.execute_command("CLUSTER MEET", "127.0.0.1", self.nodes[0].port)

    def _formed(self) -> bool:
        for node in self.nodes:
            with self._client(node) as client:
                # redis-py parses the reply into a dict of strings.
                fields = client.execute_command("CLUSTER INFO")
            if fields.get("cluster_state") != "ok":
                return False
            if int(fields.get("cluster_known_nodes", 0)) != len(self.nodes):
                return False
        return True

    def flush(self) -> None:
        """Empty every node (FLUSHALL reaches only the node it is sent to)."""
        for node in self.nodes:
            with self._client(node) as client:
                client.flushall()

    @staticmethod
    def _client(node: EmbeddedRedis) -> redis.Redis[bytes]:
        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5.0)

    def stop(self, *, remove: bool = True) -> None:
        for node in self.nodes:
            node.stop(remove=remove)
