#!/usr/bin/env python3
"""Lints and renders the Helm chart with the real Helm engine (helm-python-sdk), then validates
every rendered manifest, the chart's CRDs, and the objects the operator builds for the example
clusters against the Kubernetes JSON schemas (kubernetes-validate, offline, strict), and the
example custom resources against our CRDs' OpenAPI schemas (jsonschema).

Usage: .venv/bin/python scripts/check-chart.py [CRDGEN_BINARY]
Exits non-zero on the first class of failure, after printing every problem found in it.
"""
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "tributary-operator"
K8S_VERSION = "1.33.0"
CRDGEN = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "crdgen")

VALUE_SETS = {
    "defaults": {},
    "namespaced-ha": {
        "replicas": 2,
        "watchNamespace": "kafka",
        "logLevel": "debug",
        "image": {"repository": "registry.example/tributary-operator", "tag": "1.2.3"},
        "serviceAccount": {"create": True, "name": "tributary"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "podAnnotations": {"prometheus.io/scrape": "true"},
    },
    "no-leader-election": {"leaderElection": {"enabled": False}},
}

problems = []


def fail(msg):
    problems.append(msg)
    print(f"FAIL {msg}")


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def k8s_validate(doc, where):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        fail(f"{where}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {e.message} at {list(e.path)}")
    except kubernetes_validate.SchemaNotFoundError as e:
        fail(f"{where}: no schema for {doc.get('apiVersion')} {doc.get('kind')}: {e}")


# What the operator's code calls, as (API group, resource, verb): the rendered RBAC must grant
# each one (cluster-wide or in the watched namespace).
REQUIRED_PERMISSIONS = [
    ("kafka.tributary.dev", "kafkaclusters", v) for v in ("get", "list", "watch", "patch")
] + [
    ("kafka.tributary.dev", "kafkaclusters/status", "patch"),
    ("kafka.tributary.dev", "kafkaclusters/status", "get"),  # day-2 state read fresh each pass
    ("kafka.tributary.dev", "kafkatopics/status", "patch"),
    ("kafka.tributary.dev", "kafkaclusters/finalizers", "update"),
    ("kafka.tributary.dev", "kafkatopics/finalizers", "update"),
    ("", "pods", "list"),
    ("", "pods", "delete"),
    ("", "persistentvolumeclaims", "get"),
    ("", "persistentvolumeclaims", "patch"),
    ("", "persistentvolumeclaims", "delete"),
    ("storage.k8s.io", "storageclasses", "get"),
    ("storage.k8s.io", "storageclasses", "list"),
    ("", "nodes", "get"),
    ("apps", "statefulsets", "delete"),
    ("apps", "statefulsets", "patch"),  # day-2 ScaleBrokers
    ("", "configmaps", "delete"),
    ("events.k8s.io", "events", "create"),
]


def check_permissions(name, rendered_docs):
    granted = set()
    for doc in rendered_docs:
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in doc.get("rules", []):
            for g in rule.get("apiGroups", []):
                for r in rule.get("resources", []):
                    for v in rule.get("verbs", []):
                        granted.add((g, r, v))
    missing = [p for p in REQUIRED_PERMISSIONS if p not in granted]
    if missing:
        fail(f"rbac[{name}]: the operator needs {missing}")
    else:
        print(f"ok   rbac[{name}] grants the {len(REQUIRED_PERMISSIONS)} permissions the operator uses")


def lint_and_render():
    chart = helm.Chart.load(str(CHART))
    for name, values in VALUE_SETS.items():
        report = helm.lint(str(CHART), values, strict=True, namespace="tributary", kube_version=f"v{K8S_VERSION}")
        for m in report.get("messages", []):
            if m.get("severity", 0) >= 2:
                fail(f"lint[{name}]: {m.get('path')}: {m.get('error')}")
        for e in report.get("errors", []) or []:
            fail(f"lint[{name}]: {e}")
        rendered = chart.render(values, name="tributary", namespace="tributary", is_install=True)
        kinds = []
        all_docs = []
        for path, text in sorted(rendered.items()):
            if path.endswith("NOTES.txt"):
                if "kubectl apply" not in text:
                    fail(f"render[{name}]: NOTES.txt does not say what to apply next")
                continue
            for doc in docs(text):
                kinds.append(doc["kind"])
                all_docs.append(doc)
                k8s_validate(doc, f"render[{name}] {path}")
        check_permissions(name, all_docs)
        expected = {"Deployment", "ServiceAccount", "Service"}
        if not expected <= set(kinds):
            fail(f"render[{name}]: missing kinds {expected - set(kinds)} in {kinds}")
        role_kind = "Role" if values.get("watchNamespace") else "ClusterRole"
        if role_kind not in kinds:
            fail(f"render[{name}]: expected a {role_kind}, got {kinds}")
        print(f"ok   chart renders and lints with {name} values: {', '.join(sorted(kinds))}")


def crds_and_examples():
    crds = {}
    for f in sorted((CHART / "crds").glob("*.yaml")):
        for crd in docs(f.read_text()):
            k8s_validate(crd, f"crd {f.name}")
            version = crd["spec"]["versions"][0]
            crds[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    for f in sorted((CHART / "examples").glob("*.yaml")):
        for doc in docs(f.read_text()):
            schema = crds.get((doc.get("apiVersion"), doc.get("kind")))
            if schema is None:
                fail(f"example {f.name}: no CRD for {doc.get('apiVersion')} {doc.get('kind')}")
                continue
            errors = list(jsonschema.Draft4Validator(schema).iter_errors(doc))
            for e in errors:
                fail(f"example {f.name}: {e.message} at {list(e.path)}")
            if not errors:
                print(f"ok   example {f.name} ({doc['kind']}) matches its CRD schema")
            if doc["kind"] == "KafkaCluster":
                out = subprocess.run([CRDGEN, "render", str(f)], capture_output=True, text=True)
                if out.returncode != 0:
                    fail(f"crdgen render {f.name}: {out.stderr.strip()}")
                    continue
                objs = docs(out.stdout)
                for obj in objs:
                    k8s_validate(obj, f"operator objects for {f.name}")
                print(f"ok   {len(objs)} operator-built objects for {f.name} validate against Kubernetes {K8S_VERSION}")


def main():
    lint_and_render()
    crds_and_examples()
    if problems:
        print(f"{len(problems)} problem(s)")
        sys.exit(1)


if __name__ == "__main__":
    main()
