"""infill-ls's editor side: LSP server, prompts, shaping (see README, Development)."""

import warnings

# torch warns on import when numpy is absent (`pip install torch -e .` brings none); infill-ls never
# hands torch a numpy array, so the command line and the server's log stay quiet about it.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)
