"""Level 2: the top-k sparse softmax gate, its features and file format, the objective F(S) it
defines with its monotone envelope, and the pipeline that trains it from a scenario's outcomes."""
