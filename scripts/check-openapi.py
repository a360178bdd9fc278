#!/usr/bin/env python3
"""Checks docs/openapi.yaml against the routes aggd registers.

  scripts/check-openapi.py [--server http://127.0.0.1:8080]

Without --server: the document's (method, path) pairs must equal the route table in
api/routes.c, every {param} of a path must be declared, every $ref must resolve and
every operation must list its responses. With --server: each documented route must
also be answered by that running aggd as a route (anything but the router's own
404 "no such route" or 405), so the document cannot drift from what the binary serves.
Exit 0 when all agree, 1 with one line per difference otherwise.
"""
import argparse
import http.client
import json
import os
import re
import sys
import urllib.parse

try:
    import yaml
except ImportError:
    sys.exit("check-openapi: PyYAML is missing (Debian: python3-yaml)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("get", "post", "put", "patch", "delete")
ROUTE_RE = re.compile(r'\{\s*(GET|POST|PUT|PATCH|DELETE)\s*,\s*"(/api/v1[^"]*)"')


def code_routes(path):
    with open(path, encoding="utf-8") as f:
        return {(m.group(1).lower(), m.group(2)) for m in ROUTE_RE.finditer(f.read())}


def resolve(doc, ref):
    node = doc
    for part in ref.lstrip("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def walk_refs(doc, node, where, problems):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and resolve(doc, ref) is None:
            problems.append(f"{where}: $ref {ref} does not resolve")
        for k, v in node.items():
            walk_refs(doc, v, f"{where}/{k}", problems)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk_refs(doc, v, f"{where}/{i}", problems)


def param_names(doc, params):
    names = set()
    for p in params or []:
        p = resolve(doc, p["$ref"]) if "$ref" in p else p
        if p and p.get("in") == "path":
            names.add(p["name"])
    return names


def doc_routes(doc, problems):
    if not str(doc.get("openapi", "")).startswith("3."):
        problems.append("openapi: not an OpenAPI 3 document")
    routes = set()
    for path, item in (doc.get("paths") or {}).items():
        wanted = set(re.findall(r"\{([^}]+)\}", path))
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            routes.add((method, path))
            declared = param_names(doc, item.get("parameters")) | param_names(
                doc, op.get("parameters"))
            if wanted != declared:
                problems.append(f"{method.upper()} {path}: path parameters {sorted(wanted)} "
                                f"but declared {sorted(declared)}")
            if not op.get("responses"):
                problems.append(f"{method.upper()} {path}: no responses")
    walk_refs(doc, doc, "#", problems)
    return routes


def served(base, method, path):
    """True when a running aggd answers <method> <path> as one of its routes."""
    url = urllib.parse.urlsplit(base)
    concrete = re.sub(r"\{[^}]+\}", "1", path)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
    try:
        conn.request(method.upper(), concrete, body="{}" if method != "get" else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        status = resp.status
        body = resp.read(4096).decode("utf-8", "replace") if status in (404, 405) else ""
    finally:
        conn.close()
    if status == 405:
        return False
    if status == 404:
        try:
            return json.loads(body)["error"]["message"] != "no such route"
        except (ValueError, KeyError, TypeError):
            return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", help="base URL of a running aggd to ask as well")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "openapi.yaml"))
    ap.add_argument("--routes", default=os.path.join(ROOT, "api", "routes.c"))
    args = ap.parse_args()

    problems = []
    with open(args.doc, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    documented = doc_routes(doc, problems)
    registered = code_routes(args.routes)
    if not registered:
        problems.append(f"{args.routes}: no routes found (has the table's layout changed?)")
    for method, path in sorted(registered - documented):
        problems.append(f"{method.upper()} {path}: registered but not in {args.doc}")
    for method, path in sorted(documented - registered):
        problems.append(f"{method.upper()} {path}: documented but not registered")
    if args.server:
        for method, path in sorted(documented):
            if not served(args.server, method, path):
                problems.append(f"{method.upper()} {path}: the server does not answer it")
    for p in problems:
        print(f"check-openapi: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"check-openapi: {len(documented)} operations documented and registered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
