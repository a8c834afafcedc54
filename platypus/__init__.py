"""platypus: the Platypus recipe (curate -> train -> merge -> evaluate), declarative and Hydra-configured."""

import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"

# In a checkout (run.py, PYTHONPATH=., an editable install), ``platypus.conf`` is this checkout's top-level conf/;
# a wheel ships it inside the package (pyproject's package-dir), which a plain sys.path entry cannot do.
_CHECKOUT_CONF = Path(__file__).resolve().parent.parent / "conf"
if "platypus.conf" not in sys.modules and not (Path(__file__).parent / "conf").is_dir() and (
        _CHECKOUT_CONF / "__init__.py").is_file():
    _spec = importlib.util.spec_from_file_location("platypus.conf", _CHECKOUT_CONF / "__init__.py",
                                                   submodule_search_locations=[str(_CHECKOUT_CONF)])
    sys.modules["platypus.conf"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["platypus.conf"])
