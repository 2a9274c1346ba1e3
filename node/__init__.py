"""The data node: server loop, auth, storage, object store, allowlist and plan executor.

Submodules are imported where needed (``syft_kernel.node.server``, ``.nodedir``, …) so that the
client can use the shared allowlist without loading the server.
"""
