"""ipywidgets views of a node: dataset search, the request queue and privacy budgets.

In Jupyter, displaying ``client.datasets``, ``client.requests`` or ``client.budget`` shows these;
elsewhere the same objects print as text tables.
"""

from .budget import BudgetView
from .live import NodeWatcher
from .queue import RequestQueue, RequestRow
from .search import DatasetSearch

__all__ = ["BudgetView", "DatasetSearch", "NodeWatcher", "RequestQueue", "RequestRow"]
