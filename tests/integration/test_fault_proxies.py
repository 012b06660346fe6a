"""The fault tests' TCP proxies (tests/servers.py) count what the tests compare."""
import socket

from tests.helpers import HANG_GUARD_SECONDS, wait_for
from tests.servers import pausing_proxy, stalling_proxy


def test_a_connection_given_up_before_the_proxy_accepted_it_is_connected_until_its_end():
    """Queued, then closed by its client: still counted, so counts read at 0 are final."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        for proxy_of in (stalling_proxy, pausing_proxy):
            with proxy_of(server.getsockname()[1]) as proxy:
                proxy.stall()
                with proxy._lock:  # accepts nothing meanwhile
                    socket.create_connection(("127.0.0.1", proxy.port)).close()
                    assert (proxy.connected, proxy.accepted) == (1, 0), proxy_of.__name__
                wait_for(lambda: proxy.connected == 0, "the proxy to see the connection end",
                         HANG_GUARD_SECONDS)
                assert proxy.accepted == 1, proxy_of.__name__
                if proxy_of is stalling_proxy:
                    assert proxy.hung_up == 1
