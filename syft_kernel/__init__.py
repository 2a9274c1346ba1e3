"""syft-kernel: Jupyter-native remote data science on private data."""

from .client import Client, login
from .datasets import Dataset
from .errors import (
    AuthenticationError,
    InvalidArgument,
    NodeUnavailable,
    NotFound,
    OpNotAllowed,
    PermissionDenied,
    ProtocolError,
    RemoteError,
    SyftError,
    Unauthorized,
)
from .keys import KeyPair, generate_keypair, read_keypair, write_keypair
from .launcher import NodeProcess, start_node
from .pointer import Pointer

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Client",
    "Dataset",
    "InvalidArgument",
    "KeyPair",
    "NodeProcess",
    "NodeUnavailable",
    "NotFound",
    "OpNotAllowed",
    "PermissionDenied",
    "Pointer",
    "ProtocolError",
    "RemoteError",
    "SyftError",
    "Unauthorized",
    "generate_keypair",
    "login",
    "read_keypair",
    "start_node",
    "write_keypair",
]
