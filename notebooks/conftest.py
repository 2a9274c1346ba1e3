"""Under nbval, each notebook's last cell cleans up (a person running it leaves it live)."""

import os

os.environ["SYFT_NOTEBOOK_CLEANUP"] = "1"  # the kernels nbval starts inherit it
