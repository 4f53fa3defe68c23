"""``sys.path`` for a benchmark run as a file (``python bench/<name>.py``).

Python then puts the script's folder first on ``sys.path``, and this folder holds
``queue.py`` (the issue names it so), which would shadow the standard library's ``queue``
module for everything imported afterwards (asyncio's executors, multiprocessing, redis). Every
script imports this module first in that case (``if not __package__: import _bootstrap``), so
its imports see what ``python -m bench.<name>`` gives them: the repository root, not bench/.
"""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))
