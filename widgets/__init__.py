"""ipywidgets views of a node: dataset search (on a node or across a network), the request queue
and privacy budgets.

In Jupyter, displaying ``client.datasets``, ``client.requests``, ``client.budget`` or a network
search (``net.datasets.search(…)``) shows these; elsewhere the same objects print as text tables.
"""

from .budget import BudgetView
from .live import NodeWatcher
from .queue import RequestQueue, RequestRow
from .search import DatasetSearch

__all__ = ["BudgetView", "DatasetSearch", "NodeWatcher", "RequestQueue", "RequestRow"]
