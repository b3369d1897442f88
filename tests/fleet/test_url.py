"""Broker URLs: several nodes, in failover order."""
from __future__ import annotations

from twisted.trial.unittest import TestCase

from txlibxl.amqp.topology import StreamTopology, routing_key
from txlibxl.amqp.url import BrokerAddress, parse_broker_url


class URLTests(TestCase):
    def test_one_url_names_several_nodes_in_order(self) -> None:
        url = parse_broker_url("amqp://u:p%40ss@127.0.0.1:5673,127.0.0.1,[::1]:5674/fleet")
        self.assertEqual(url.nodes, (BrokerAddress("127.0.0.1", 5673), BrokerAddress("127.0.0.1", 5672),
                                     BrokerAddress("::1", 5674)))
        self.assertEqual((url.username, url.password, url.vhost), ("u", "p@ss", "fleet"))

    def test_defaults_are_guest_and_the_default_vhost(self) -> None:
        url = parse_broker_url("amqp://localhost")
        self.assertEqual((url.username, url.password, url.vhost), ("guest", "guest", "/"))
        self.assertEqual(parse_broker_url("amqp://h/%2F").vhost, "/")

    def test_a_list_of_urls_is_one_node_list(self) -> None:
        url = parse_broker_url("amqp://h1:1,amqp://h2:2 amqp://h1:1")
        self.assertEqual([str(n) for n in url.nodes], ["h1:1", "h2:2"])

    def test_the_password_is_not_shown(self) -> None:
        self.assertNotIn("secret", str(parse_broker_url("amqp://u:secret@h")))
        self.assertNotIn("secret", repr(parse_broker_url("amqp://u:secret@h")))

    def test_bad_urls_say_why(self) -> None:
        for bad in ("", "http://h", "amqp://h:0", "amqp://h:x", "amqp://,h", "amqp://a:1,amqp://u:p@b:2",
                    "amqp://h/?heartbeat=1"):
            self.assertRaises(ValueError, parse_broker_url, bad)


class TopologyTests(TestCase):
    def test_routing_keys_name_host_domain_and_type(self) -> None:
        self.assertEqual(routing_key("xen1.example.org", "u-1", "death"), "xen.xen1_example_org.u-1.death")
        self.assertEqual(routing_key("xen1", None, "snapshot"), "xen.xen1.host.snapshot")

    def test_the_stream_arguments(self) -> None:
        args = StreamTopology(max_age="1D", max_bytes=10, cluster_size=3).queue_arguments()
        self.assertEqual(args, {"x-queue-type": "stream", "x-max-age": "1D", "x-initial-cluster-size": 3,
                                "x-max-length-bytes": 10})

    def test_bad_retention_is_refused(self) -> None:
        self.assertRaises(ValueError, StreamTopology, max_age="7 days")
        self.assertRaises(ValueError, StreamTopology, max_bytes=0)
        self.assertRaises(ValueError, StreamTopology, stream="")
