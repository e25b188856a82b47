"""The array engine (BOTTOM layer): trees as struct-of-arrays, numba kernels for selection,
expansion, widening and backup, the plain-Python reference, export, the generic round loop
and a toy environment. Imports numpy, numba and networkx only (the architecture contract in
pyproject.toml enforces it)."""
