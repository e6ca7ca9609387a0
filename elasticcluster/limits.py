"""Limits shared by the model and the configuration checks (a leaf module: importing it costs
nothing, so checking a configuration need not import the model)."""

#: the most nodes a cluster holds (the node names have room for more, but no cloud quota does)
MAX_NODES = 10000
