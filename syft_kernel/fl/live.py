"""The live loss and accuracy plot of a running federated job, in Jupyter (matplotlib)."""

from __future__ import annotations

from typing import Any


def in_jupyter() -> bool:
    """Whether this runs in a Jupyter kernel (where a display can be updated in place)."""
    try:
        import IPython
    except ImportError:
        return False
    ip = IPython.get_ipython()  # type: ignore[attr-defined,no-untyped-call]
    return ip is not None and hasattr(ip, "kernel")


def plot_metrics(metrics: Any, ax: Any = None) -> Any:
    """Loss (and accuracy, on a second axis) per round from ``job.metrics``; returns the figure."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if ax is None:  # a Figure of its own, not pyplot's: shown once, as the value it is
        fig = Figure(figsize=(6, 3.2))
        ax = fig.subplots()
    else:
        fig = ax.figure
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.plot(metrics["round"], metrics["train_loss"], "o-", label="train loss")
    if metrics["eval_loss"].notna().any():
        ax.plot(metrics["round"], metrics["eval_loss"], "s-", label="eval loss")
    ax.set_xlabel("round")
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    if metrics["accuracy"].notna().any():
        acc = ax.twinx()
        acc.plot(metrics["round"], metrics["accuracy"], "^-", color="tab:green", label="accuracy")
        acc.set_ylabel("accuracy")
        acc.set_ylim(0, 1)
        h2, l2 = acc.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


class LivePlot:
    """One figure shown once and redrawn in place after every round."""

    def __init__(self) -> None:
        from IPython.display import display

        self.handle = display(display_id=True)  # type: ignore[no-untyped-call]

    @classmethod
    def maybe(cls, plot: bool | None) -> LivePlot | None:
        """A live plot when asked for, or (``None``) when running in Jupyter."""
        if plot is False or (plot is None and not in_jupyter()):
            return None
        return cls()

    def update(self, metrics: Any) -> None:
        self.handle.update(plot_metrics(metrics))

    def close(self) -> None:
        pass
