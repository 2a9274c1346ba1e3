"""The jupyter_server extension: REST API under ``/syft/api/`` and the owner's dashboard at
``/syft/dashboard``. Installing the package enables it (``jupyter_server_config.d/syft_kernel.json``)."""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import SyftExtension

    return [{"module": "syft_kernel.extension", "app": SyftExtension}]
