"""The network's gateway: a registry of data nodes and the public listings of their datasets.

It works like a DNS for datasets: nodes join (a registration signed with the node's key, admitted
by the gateway's operator) and publish their datasets' public metadata; scientists search it and
are routed to the nodes, where they log in as usual. It holds no private data.
"""
