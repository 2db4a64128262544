"""One module per question: non-linearity, modularity, parameters, symmetry (plus pruning, zoo)."""
