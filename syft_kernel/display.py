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


def show(obj: Any, make_widget: Callable[[], Any]) -> None:
    """Display ``make_widget()`` where widgets render, else ``obj``'s text table."""
    from IPython.display import display

    if widgets_usable():
        display(make_widget())
    else:
        display({"text/plain": repr(obj)}, raw=True)
