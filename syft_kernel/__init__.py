"""syft-kernel: Jupyter-native remote data science on private data.

Every public name is imported on first use (PEP 562), so ``import syft_kernel`` is cheap and a
node process, which imports ``syft_kernel.node``, never loads the client, pointers or widgets.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_ERRORS = (
    "AuthenticationError BudgetExceeded CompositeError InvalidArgument NodeUnavailable NotFound "
    "OpNotAllowed PermissionDenied ProtocolError QuotaExceeded RemoteError SyftError Unauthorized"
).split()

# public name -> the module that defines it
_MODULES = ("sample_data", "widgets", "fl")  # public submodules, imported on first use
_EXPORTS: dict[str, str] = {
    **{name: ".core.errors" for name in _ERRORS},
    "KeyPair": ".core.keys",
    "generate_keypair": ".core.keys",
    "read_keypair": ".core.keys",
    "write_keypair": ".core.keys",
    "AsyncClient": ".aio",
    "Client": ".client",
    "login": ".client",
    "Job": ".code",
    "Dataset": ".datasets",
    "Budget": ".dp",
    "Consensus": ".governance",
    "Single": ".governance",
    "Threshold": ".governance",
    "NodeProcess": ".launcher",
    "GatewayProcess": ".launcher",
    "start_node": ".launcher",
    "start_gateway": ".launcher",
    "Network": ".network",
    "connect_network": ".network",
    "AccountRequest": ".network",
    "Plan": ".plans",
    "plan": ".plans",
    "Pointer": ".pointer",
    "Request": ".requests",
}

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .client import Client, login
    from .code import Job
    from .core.errors import (
        AuthenticationError,
        BudgetExceeded,
        CompositeError,
        InvalidArgument,
        NodeUnavailable,
        NotFound,
        OpNotAllowed,
        PermissionDenied,
        ProtocolError,
        QuotaExceeded,
        RemoteError,
        SyftError,
        Unauthorized,
    )
    from .core.keys import KeyPair, generate_keypair, read_keypair, write_keypair
    from .datasets import Dataset
    from .dp import Budget
    from .governance import Consensus, Single, Threshold
    from .launcher import GatewayProcess, NodeProcess, start_gateway, start_node
    from .network import AccountRequest, Network, connect_network
    from .plans import Plan, plan
    from .pointer import Pointer
    from .requests import Request


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (``sk.widgets`` too: ipywidgets is optional)."""
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_MODULES])


def load_ipython_extension(ip: object) -> None:
    """``%load_ext syft_kernel``: magics and per-cell batching in any IPython kernel."""
    from .magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: object) -> None:
    """``%unload_ext syft_kernel``: the magics go and cells run eagerly again."""
    from .magics import unload_ipython_extension as unload

    unload(ip)


__all__ = [
    "AccountRequest",
    "AsyncClient",
    "AuthenticationError",
    "Budget",
    "BudgetExceeded",
    "Client",
    "CompositeError",
    "Consensus",
    "Dataset",
    "GatewayProcess",
    "InvalidArgument",
    "Job",
    "KeyPair",
    "Network",
    "NodeProcess",
    "NodeUnavailable",
    "NotFound",
    "OpNotAllowed",
    "PermissionDenied",
    "Plan",
    "Pointer",
    "ProtocolError",
    "QuotaExceeded",
    "RemoteError",
    "Request",
    "Single",
    "SyftError",
    "Threshold",
    "Unauthorized",
    "connect_network",
    "generate_keypair",
    "login",
    "plan",
    "read_keypair",
    "start_gateway",
    "start_node",
    "sample_data",
    "widgets",
    "write_keypair",
]
