"""How client objects show themselves: a widget inside a Jupyter kernel, a text table elsewhere."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any


def widgets_usable() -> bool:
    """True inside a Jupyter kernel with ipywidgets installed (``SYFT_KERNEL_WIDGETS=0`` turns it off)."""
    if os.environ.get("SYFT_KERNEL_WIDGETS", "1") == "0" or importlib.util.find_spec("ipywidgets") is None:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def show(obj: Any, client: Any, kind: str, make_widget: Callable[[], Any]) -> None:
    """Display a widget where widgets render, else ``obj``'s text table. Each client has one live
    view per ``kind``: displaying it again refreshes and shows that view, so re-running a cell
    does not pile up views that all listen to the node."""
    from IPython.display import display

    if not widgets_usable():
        display({"text/plain": repr(obj)}, raw=True)
        return
    views = client.views  # kept on the client: they live and die together
    view = views.get(kind)
    if view is None or getattr(view, "comm", None) is None:  # never made, or closed
        view = views[kind] = make_widget()
    else:
        view.refresh()
    display(view)
