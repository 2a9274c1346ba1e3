"""The ``syft-kernel`` command: make and serve nodes, make keys, run the demo."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .core.errors import SyftError


def _node_init(args: argparse.Namespace) -> int:
    from syft_kernel.node.nodedir import init_node

    made = init_node(args.dir, args.name, host=args.host, port=args.port, owner=args.owner)
    print(f"node {args.name!r} created in {made['folder']}")
    print(f"  connection file (give it to users): {made['connection']}")
    print(f"  owner key (keep it secret):         {made['owner_key']}")
    print(f"serve it with: syft-kernel node serve {args.dir}")
    return 0


def _node_serve(args: argparse.Namespace) -> int:
    from syft_kernel.node.server import serve

    serve(
        args.dir,
        host=args.host,
        port=args.port,
        ipc=False if args.no_ipc else None,
        parent_pid=args.parent_pid,
        argv=args.settings,
    )
    return 0


def _node_config(args: argparse.Namespace) -> int:
    from syft_kernel.node.config import NodeConfig

    print(NodeConfig.load(args.dir, args.settings).describe())
    return 0


def _gateway_init(args: argparse.Namespace) -> int:
    from syft_kernel.gateway.folder import init_gateway

    made = init_gateway(args.dir, args.name, host=args.host, port=args.port, auto_admit=args.auto_admit)
    print(f"gateway {args.name!r} created in {made['folder']}")
    print(f"  connection file (give it to nodes and scientists): {made['connection']}")
    print(f"serve it with: syft-kernel gateway serve {args.dir}")
    return 0


def _gateway_serve(args: argparse.Namespace) -> int:
    from syft_kernel.gateway.server import serve

    extra = {"auto_admit": True} if args.auto_admit else {}
    serve(args.dir, host=args.host, port=args.port, parent_pid=args.parent_pid, argv=args.settings, **extra)
    return 0


def _gateway_db(folder: str) -> object:
    from syft_kernel.gateway.db import GatewayDB

    if not (Path(folder) / "gateway.db").exists():
        raise SyftError(f"{folder} is not a gateway folder (no gateway.db): pass the folder with --dir")
    return GatewayDB(Path(folder) / "gateway.db")


def _gateway_admit(args: argparse.Namespace) -> int:
    db = _gateway_db(args.dir)
    if not db.claims(args.name):  # type: ignore[attr-defined]
        raise SyftError(f"no node {args.name!r} asked to join (see `syft-kernel gateway nodes --dir {args.dir}`)")
    node = db.admit(args.name, args.key)  # type: ignore[attr-defined]
    if node is None:
        print(f"{args.name} is already admitted")
        return 0
    print(f"admitted {args.name} (key {node['public_key'][:8]}…, {', '.join(node['addresses'])})")
    return 0


def _gateway_remove(args: argparse.Namespace) -> int:
    db = _gateway_db(args.dir)
    if not db.remove_node(args.name, f"the gateway's operator removed {args.name}", ban=True):  # type: ignore[attr-defined]
        raise SyftError(f"no node {args.name!r} on this gateway")
    print(f"removed {args.name} and its listings (it cannot join again until admitted again)")
    return 0


def _gateway_nodes(args: argparse.Namespace) -> int:
    import time

    from syft_kernel.gateway.config import GatewayConfig

    db = _gateway_db(args.dir)
    served = db.get_meta("offline_after_s")  # type: ignore[attr-defined]
    offline_after = float(served) if served else GatewayConfig.load(args.dir).offline_after_s
    rows = db.nodes()  # type: ignore[attr-defined]
    if not rows:
        print("no node has joined yet")
    for n in rows:
        seen = time.time() - n["last_seen"]
        state = n["status"] if n["status"] != "admitted" else ("online" if seen <= offline_after else "offline")
        print(
            f"{n['name']:<24} {state:<8} {n['datasets']:>5} datasets  {n['open_accounts']:>3} account requests  "
            f"key {n['public_key'][:8]}…  {', '.join(n['addresses'])}  (last heard {seen:.0f} s ago)"
        )
    return 0


def _gateway_config(args: argparse.Namespace) -> int:
    from syft_kernel.gateway.config import GatewayConfig

    print(GatewayConfig.load(args.dir, args.settings).describe())
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from .core.keys import generate_keypair, write_keypair

    key, pub = write_keypair(generate_keypair(args.name), args.out)
    print(f"secret key: {key} (keep it; log in with it)")
    print(f"public key: {pub} (send it to the data owner)")
    return 0


def _install(args: argparse.Namespace) -> int:
    from .kernel import DISPLAY_NAME, install

    where = install(user=args.user, prefix=args.prefix)
    print(f"installed the {DISPLAY_NAME!r} kernel in {where}")
    from .kernel import enable_server_extension

    print(f"enabled the server extension (/syft/dashboard) in {enable_server_extension(args.prefix, user=args.user)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.dir), port=args.port, lab=not args.no_lab, lab_port=args.lab_port, user=args.user)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="syft-kernel", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    node = sub.add_parser("node", help="make and serve data nodes").add_subparsers(dest="node_command", required=True)
    p = node.add_parser("init", help="create a node folder (database, keys, connection file)")
    p.add_argument("dir")
    p.add_argument("--name", required=True, help="the node's name, e.g. hospital")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5555, help="TCP port (default 5555)")
    p.add_argument("--owner", default="owner", help="name of the first owner (default owner)")
    p.set_defaults(fn=_node_init)
    p = node.add_parser("serve", help="serve a node folder until SIGTERM / Ctrl-C")
    p.add_argument("dir")
    p.add_argument("--host", default=None, help="override the folder's host")
    p.add_argument("--port", type=int, default=None, help="override the folder's port (0: any free port)")
    p.add_argument("--no-ipc", action="store_true", help="do not also listen on ipc:// for local clients")
    p.add_argument("--parent-pid", type=int, default=None, help="stop when this process exits")
    p.set_defaults(fn=_node_serve, settings=[])
    p = node.add_parser("config", help="list a node folder's settings (NodeConfig) and what each does")
    p.add_argument("dir")
    p.set_defaults(fn=_node_config, settings=[])

    gw = sub.add_parser("gateway", help="make and serve a network's gateway (dataset search across nodes)")
    gws = gw.add_subparsers(dest="gateway_command", required=True)
    p = gws.add_parser("init", help="create a gateway folder (database, keys, connection file)")
    p.add_argument("dir")
    p.add_argument("--name", required=True, help="the network's name, e.g. grid")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5600, help="TCP port (default 5600)")
    p.add_argument("--auto-admit", action="store_true", help="admit every node that joins (for a demo)")
    p.set_defaults(fn=_gateway_init)
    p = gws.add_parser("serve", help="serve a gateway folder until SIGTERM / Ctrl-C")
    p.add_argument("dir")
    p.add_argument("--host", default=None, help="override the folder's host")
    p.add_argument("--port", type=int, default=None, help="override the folder's port (0: any free port)")
    p.add_argument("--auto-admit", action="store_true", help="admit every node that joins (for a demo)")
    p.add_argument("--parent-pid", type=int, default=None, help="stop when this process exits")
    p.set_defaults(fn=_gateway_serve, settings=[])
    for verb, fn, what in (
        ("admit", _gateway_admit, "admit a node that asked to join (or one removed before)"),
        ("remove", _gateway_remove, "remove a member node and its listings; it cannot join again until admitted"),
    ):
        p = gws.add_parser(verb, help=what)
        p.add_argument("name", help="the node's name")
        p.add_argument("--dir", default=".", help="the gateway's folder (default .)")
        if verb == "admit":
            p.add_argument(
                "--key", default="", help="the first characters of its key, when several nodes claim the name"
            )
        p.set_defaults(fn=fn)
    p = gws.add_parser("nodes", help="list the nodes that joined, online or not, and what they list")
    p.add_argument("--dir", default=".", help="the gateway's folder (default .)")
    p.set_defaults(fn=_gateway_nodes)
    p = gws.add_parser("config", help="list a gateway folder's settings (GatewayConfig)")
    p.add_argument("dir")
    p.set_defaults(fn=_gateway_config, settings=[])

    p = sub.add_parser("keygen", help="make a user keypair NAME.key / NAME.pub")
    p.add_argument("name")
    p.add_argument("--out", default=".", help="folder to write to (default .)")
    p.set_defaults(fn=_keygen)

    p = sub.add_parser("install", help="install the Jupyter kernel 'Python 3 (syft)'")
    p.add_argument("--user", action="store_true", help="into your user's Jupyter folder")
    p.add_argument("--prefix", default=None, help="into PREFIX/share/jupyter (default: this Python's prefix)")
    p.set_defaults(fn=_install)

    p = sub.add_parser("demo", help="a hospital node with sample data, then JupyterLab with the notebooks")
    p.add_argument("--dir", default="demo-node", help="node folder (default ./demo-node)")
    p.add_argument("--port", type=int, default=5555)
    p.add_argument("--lab-port", type=int, default=8888)
    p.add_argument("--no-lab", action="store_true", help="serve the node only")
    p.add_argument("--user", action="store_true", help="install the kernel and extension into your Jupyter folders")
    p.set_defaults(fn=_demo)

    args, extra = parser.parse_known_args(argv)
    prefix = "--GatewayConfig." if getattr(args, "command", "") == "gateway" else "--NodeConfig."
    settings = [a for a in extra if a.startswith(prefix)]
    if len(settings) != len(extra) or (settings and not hasattr(args, "settings")):
        parser.error(
            f"unrecognized arguments: {' '.join(a for a in extra if a not in settings) or ' '.join(extra)}"
            " (settings are --NodeConfig.name=value for node serve and node config,"
            " --GatewayConfig.name=value for gateway serve and gateway config)"
        )
    if hasattr(args, "settings"):
        args.settings = settings
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.fn(args))
    except SyftError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
