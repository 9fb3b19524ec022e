#!/usr/bin/env python3
"""Validates rendered deployment files offline, without a cluster or a Docker engine.

  validate_deploy.py k8s FILE --schemas DIR [--kubernetes-version V ...]
  validate_deploy.py compose FILE --schemas DIR

Kubernetes objects are checked with kubernetes-validate (the API's OpenAPI schemas, strict:
unknown fields are errors); KEDA objects against KEDA's CRD schemas in DIR, made strict in the
same way (an unknown field is an error, as `kubectl apply --validate=strict` makes it); the
Compose file against the Compose specification's JSON Schema in DIR.

Prints one line per object ("ok KIND/NAME" or "error KIND/NAME: ...") and exits 1 on any error.
"""
import argparse
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml


def strict(schema):
    """A copy of an OpenAPI v3 CRD schema where objects with listed properties admit no others,
    unless the schema says unknown fields are preserved."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def crd_schemas(directory):
    """{(apiVersion, kind): strict schema} of every CRD file in directory."""
    schemas = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(directory, name)) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    # metadata is checked by the API server's ObjectMeta, not the CRD: allow it.
                    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def describe(doc):
    name = ((doc or {}).get("metadata") or {}).get("name", "?")
    return f"{(doc or {}).get('kind', '?')}/{name}"


def check_k8s(path, schema_dir, versions):
    crds = crd_schemas(schema_dir)
    failures = 0
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    if not docs:
        print(f"error {path}: no objects")
        return 1
    for doc in docs:
        label = describe(doc)
        key = (doc.get("apiVersion"), doc.get("kind"))
        try:
            if key in crds:
                jsonschema.Draft7Validator(crds[key]).validate(doc)
            elif "/" in str(key[0]) and "." in key[0].split("/")[0] and not key[0].split("/")[0].endswith(".k8s.io"):
                raise ValueError(f"no schema for {key[0]} {key[1]}")
            else:
                for version in versions:
                    kubernetes_validate.validate(doc, version, strict=True)
            print(f"ok {label}")
        except jsonschema.ValidationError as e:
            failures += 1
            where = "/".join(str(p) for p in e.absolute_path)
            print(f"error {label}: {where}: {e.message}")
        except kubernetes_validate.ValidationError as e:
            failures += 1
            where = "/".join(str(p) for p in e.path)
            print(f"error {label}: {where}: {e.message}")
        except Exception as e:  # unknown kinds and versions
            failures += 1
            print(f"error {label}: {e}")
    return 1 if failures else 0


def check_compose(path, schema_dir):
    with open(os.path.join(schema_dir, "compose-spec.json")) as f:
        schema = json.load(f)
    with open(path) as f:
        doc = yaml.safe_load(f)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errors:
        print(f"error compose: {'/'.join(str(p) for p in e.absolute_path)}: {e.message}")
    if errors:
        return 1
    for service in doc.get("services", {}):
        print(f"ok service/{service}")
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["k8s", "compose"])
    parser.add_argument("file")
    parser.add_argument("--schemas", required=True)
    parser.add_argument("--kubernetes-version", action="append", dest="versions")
    args = parser.parse_args()
    if args.kind == "k8s":
        return check_k8s(args.file, args.schemas, args.versions or ["1.30.0", "1.37.0"])
    return check_compose(args.file, args.schemas)


if __name__ == "__main__":
    sys.exit(main())
