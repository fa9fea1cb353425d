"""The spec format: the seed's YAML, validated, every error naming its field."""

import pytest

from monitor.desired.diff import diff
from monitor.desired.spec import SpecError, dump, parse

BOOKS = """
apiVersion: v1
kind: Service
metadata: {name: books}
spec:
  replicas: 1
  versions:
    - {name: v1, command: [python, -m, services.v1], replicas: 3}
    - {name: v2, command: [python, -m, services.v2]}
    - {name: v3, url: "http://127.0.0.1:9003"}
  readinessProbe: {httpGet: {path: /health}, periodSeconds: 2, failureThreshold: 3}
  livenessProbe: {httpGet: {path: /health/live}, periodSeconds: 2, failureThreshold: 3}
  autoscale: {targetCPU: 70, min: 1, max: 5, scaleDownStabilizationSeconds: 300}
  rollout:
    strategy: Canary
    steps: [{setWeight: 10}, {pause: {duration: 30}}, {setWeight: 50}, {pause: {}}]
    analysis: {successRate: 0.99, maxP99Ratio: 1.5, intervalSeconds: 10}
"""


def test_it_reads_the_seed_format():
    (books,) = parse(BOOKS)
    assert books.name == "books"
    assert [v.name for v in books.spec.versions] == ["v1", "v2", "v3"]
    assert [books.spec.replicas_of(v) for v in books.spec.versions] == [3, 1, 1]
    assert books.spec.autoscale is not None and books.spec.autoscale.target_cpu == 70
    assert books.spec.rollout is not None
    assert [s.set_weight for s in books.spec.rollout.steps] == [10, None, 50, None]
    assert books.spec.rollout.steps[3].pause is not None
    assert books.spec.rollout.steps[3].pause.duration is None  # waits for promote
    assert books.spec.liveness_probe.http_get.path == "/health/live"


def test_it_reads_several_services_and_round_trips():
    shop = ("apiVersion: v1\nkind: Service\nmetadata: {name: shop}\nspec:\n"
            "  versions: [{name: a, url: 'http://127.0.0.1:1'}, {name: b, url: 'http://127.0.0.1:2'}]\n"
            "  failover: {fall: 4, cooldownSeconds: 30}\n")
    services = parse(BOOKS + "---\n" + shop)
    assert [s.name for s in services] == ["books", "shop"]
    assert parse(dump(services)) == services


def test_it_fills_probe_defaults():
    (minimal,) = parse("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
                       "spec: {versions: [{name: v1, url: 'http://127.0.0.1:1'}]}\n")
    assert minimal.spec.readiness_probe.http_get.path == "/health"
    assert minimal.spec.liveness_probe.http_get.path == "/health/live"
    assert minimal.spec.readiness_probe.failure_threshold == 3


@pytest.mark.parametrize("change, field", [
    (("replicas: 3}", "replicas: -1}"), "spec.versions[0].replicas"),
    (("replicas: 3}", "replicas: many}"), "spec.versions[0].replicas"),
    (("targetCPU: 70", "targetCPU: 0"), "spec.autoscale.targetCPU"),
    (("min: 1, max: 5", "min: 6, max: 5"), "spec.autoscale: min must not be above max"),
    (("kind: Service", "kind: Deployment"), "kind"),
    (("{name: v2, command: [python, -m, services.v2]}", "{name: v1, command: [x]}"),
     "version names must be distinct"),
    (("{name: v2, command: [python, -m, services.v2]}", "{name: v2}"),
     "spec.versions[1]: give exactly one of command or url"),
    (('url: "http://127.0.0.1:9003"', 'url: "file:///etc/passwd"'), "spec.versions[2].url"),
    (("{setWeight: 10}", "{setWeight: 110}"), "spec.rollout.steps[0].setWeight"),
    (("{setWeight: 10}", "{setWeight: 10, pause: {}}"), "exactly one of setWeight or pause"),
    (("strategy: Canary", "strategy: Linear"), "spec.rollout.strategy"),
    (("path: /health}", "path: health}"), "spec.readinessProbe.httpGet.path"),
    (("replicas: 1\n", "replicas: 1\n  replica: 2\n"), "spec.replica: Extra inputs"),
    (("metadata: {name: books}", "metadata: {name: Books!}"), "metadata.name"),
])
def test_it_names_the_field_of_a_bad_spec(change, field):
    old, new = change
    assert old in BOOKS
    with pytest.raises(SpecError) as caught:
        parse(BOOKS.replace(old, new, 1))
    assert field in str(caught.value)


@pytest.mark.parametrize("text, reason", [
    ("", "no document"),
    ("a: [", "not valid YAML"),
    ("- just a list", "must be a mapping"),
    ("!!python/object/apply:os.system ['true']", "not valid YAML"),
    (BOOKS + "---\n" + BOOKS, "two documents name the same service"),
    ("x" * (300 * 1024), "larger than"),
])
def test_it_refuses_what_is_not_a_spec(text, reason):
    with pytest.raises(SpecError, match=reason):
        parse(text)


def test_it_diffs_by_field():
    (old,) = parse(BOOKS)
    (new,) = parse(BOOKS.replace("replicas: 3}", "replicas: 2}").replace("targetCPU: 70",
                                                                           "targetCPU: 60"))
    assert diff([old], [new]) == ["~ books spec.versions[0].replicas: 3 -> 2",
                                  "~ books spec.autoscale.targetCPU: 70.0 -> 60.0"]
    assert diff([old], [old]) == []
    (shop,) = parse(BOOKS.replace("name: books", "name: shop"))
    assert diff([old], [shop]) == ["- books", "+ shop"]
