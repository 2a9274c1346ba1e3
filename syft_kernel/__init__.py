"""syft-kernel: Jupyter-native remote data science on private data."""

from .client import Client, login
from .code import Job
from .datasets import Dataset
from .errors import (
    AuthenticationError,
    BudgetExceeded,
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
from .governance import Consensus, Single, Threshold
from .keys import KeyPair, generate_keypair, read_keypair, write_keypair
from .launcher import NodeProcess, start_node
from .plans import Plan, plan
from .pointer import Pointer
from .requests import Request

__version__ = "0.1.0"


def load_ipython_extension(ip: object) -> None:
    """``%load_ext syft_kernel``: magics and per-cell batching in any IPython kernel."""
    from .magics import load_ipython_extension as load

    load(ip)


def __getattr__(name: str) -> object:
    """``sk.widgets`` is imported on first use: ipywidgets is not needed to use a node."""
    if name == "widgets":
        import importlib

        return importlib.import_module(".widgets", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def unload_ipython_extension(ip: object) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ip)

__all__ = [
    "AuthenticationError",
    "BudgetExceeded",
    "Client",
    "Consensus",
    "Dataset",
    "InvalidArgument",
    "Job",
    "KeyPair",
    "NodeProcess",
    "NodeUnavailable",
    "QuotaExceeded",
    "NotFound",
    "OpNotAllowed",
    "PermissionDenied",
    "Plan",
    "Pointer",
    "ProtocolError",
    "RemoteError",
    "Request",
    "Single",
    "SyftError",
    "Threshold",
    "Unauthorized",
    "generate_keypair",
    "login",
    "plan",
    "read_keypair",
    "start_node",
    "widgets",
    "write_keypair",
]
