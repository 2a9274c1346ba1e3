"""The data node: server loop, auth, dispatch, handlers, storage, object store, requests and
governance, the DP ledger and the OS-level sandbox for code we did not write.

Submodules are imported where needed (``syft_kernel.node.server``, ``.nodedir``, …). The node
imports ``syft_kernel.core`` and never the client.
"""
