"""``SyftExtension``: the jupyter_server extension (enabled by the package's jupyter-config file)."""

from __future__ import annotations

from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from traitlets import List, Unicode, default

from .api import api_handlers
from .dashboard import DashboardHandler, NodeSectionHandler, NodesTableHandler
from .registry import NodeRegistry, default_nodes_dir

HERE = Path(__file__).resolve().parent


class SyftExtension(ExtensionApp):
    """REST API under ``/syft/api/`` and the owner's dashboard at ``/syft/dashboard``."""

    name = "syft_kernel.extension"
    extension_url = "/syft/dashboard"
    load_other_extensions = True
    static_paths = [str(HERE / "static")]  # type: ignore[assignment]

    nodes_dir = Unicode(
        help="Folder of local data nodes (one sub-folder per node); new nodes go here. "
        "Default: $SYFT_KERNEL_NODES or <jupyter data dir>/syft-kernel/nodes."
    ).tag(config=True)
    node_dirs = List(Unicode(), help="More node folders to show and manage (for example the demo's).").tag(config=True)

    @default("nodes_dir")
    def _default_nodes_dir(self) -> str:
        return str(default_nodes_dir())

    def initialize_settings(self) -> None:
        self.registry = NodeRegistry(Path(self.nodes_dir), [Path(p) for p in self.node_dirs])
        self.settings["syft_registry"] = self.registry
        self.log.info("syft-kernel: dashboard at /syft/dashboard; nodes in %s", self.nodes_dir)

    def initialize_handlers(self) -> None:
        self.handlers.extend(
            [
                *api_handlers("/syft/api"),
                ("/syft/dashboard", DashboardHandler),
                ("/syft/dashboard/fragments/nodes", NodesTableHandler),
                (r"/syft/dashboard/nodes/(?P<node>[A-Za-z0-9_.\-]+)", NodeSectionHandler),
            ]
        )

    async def stop_extension(self) -> None:
        """Stop the nodes this server started; close owner connections."""
        self.registry.stop_started()
        self.registry.close()
