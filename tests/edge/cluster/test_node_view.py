"""A node told of new members: its throughput goals follow the live node count."""

from __future__ import annotations

from refinery_py.app.node import Node
from refinery_py.app.role import ClusterRole, WorkerRole
from refinery_py.cluster.membership import ClusterView
from refinery_py.config.rules import parse_rules
from refinery_py.config.settings import parse_settings

RULES = """
RulesVersion: 2
Samplers:
  __default__:
    TotalThroughputSampler:
      GoalThroughputPerSec: 900
      UseClusterSize: true
      FieldList: [service.name]
"""
SETTINGS = """
store: {path: null}
cluster:
  peers: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3]
"""


def goal_text(node: Node) -> str:
    sampler = node.rules.engine.adaptive_sampler("__default__:TotalThroughputSampler")
    assert sampler is not None
    return sampler._goal_text()


def test_use_cluster_size_follows_the_live_member_count() -> None:
    name = "127.0.0.1:1"
    view = ClusterView((name,), name, "static")
    role = WorkerRole(0, 1, cluster=ClusterRole(name, (name,), (name,), view))
    node = Node(parse_settings(SETTINGS, "c.yaml"), parse_rules(RULES, "r.yaml"), role=role)
    assert goal_text(node) == "GoalThroughputPerSec 900"
    node.apply_view(ClusterView(("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), name, "static"))
    assert "300 for this process: 3 node(s)" in goal_text(node)
    node.apply_view(ClusterView(("127.0.0.1:1", "127.0.0.1:3"), name, "static"))
    assert "450 for this process: 2 node(s)" in goal_text(node)
