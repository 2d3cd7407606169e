"""`unde flags show|set NAME=VALUE ...`: feature flags in the cluster, without a deploy."""

from __future__ import annotations

import argparse
import json

from unde.commands.common import add_parser
from unde.flags import (
    FlagsCluster,
    ReleaseNames,
    flag_readers,
    kubernetes_client,
    parse_assignments,
    settable_flags,
    validate_changes,
)


def _cluster_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--namespace", "-n", default="unde", help="namespace of the release")
    parser.add_argument("--release", default="unde", help="Helm release name (resource prefix)")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: ~/.kube/config)")
    parser.add_argument("--context", default=None, help="kubeconfig context")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per API call")
    return parser


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "flags",
                        "show or change feature flags in the cluster (new revisions, no deploy)")
    actions = parser.add_subparsers(dest="action", required=True)
    _cluster_options(add_parser(actions, "show", "print the flags ConfigMap and each function's revision"
                                )).set_defaults(func=show)
    set_parser = _cluster_options(add_parser(actions, "set",
                                             "validate, patch the ConfigMap, roll the readers"))
    set_parser.add_argument("assignments", nargs="+", metavar="NAME=VALUE")
    set_parser.set_defaults(func=set_flags)
    add_parser(actions, "list", "print every settable flag and the functions that read it"
               ).set_defaults(func=list_flags)
    add_parser(actions, "readers", "print the chart's flag-readers.json (function -> flags it reads)"
               ).set_defaults(func=print_readers)


def _cluster(args: argparse.Namespace) -> FlagsCluster:
    names = ReleaseNames(release=args.release, namespace=args.namespace)
    return FlagsCluster(kubernetes_client(args.kubeconfig, args.context), names,
                        timeout_s=args.timeout)


def show(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    readers = settable_flags()
    for name, value in sorted(cluster.read_flags().items()):
        print(f"{name}={value}    # read by {', '.join(readers.get(name, ())) or 'no function'}")
    print()
    for service, revision, state in cluster.status():
        print(f"{service:32} {revision:40} {state}")
    return 0


def set_flags(args: argparse.Namespace) -> int:
    changes = parse_assignments(args.assignments)
    validate_changes(changes)  # a bad name or value fails here, before any connection is made
    print(_cluster(args).set_flags(changes).summary())
    return 0


def list_flags(args: argparse.Namespace) -> int:
    for name, functions in settable_flags().items():
        print(f"{name:28} {', '.join(functions)}")
    return 0


def print_readers(args: argparse.Namespace) -> int:
    """The chart's copy of who reads what; the flags hash of both sides is computed from it."""
    print(json.dumps(flag_readers(), indent=2))
    return 0
