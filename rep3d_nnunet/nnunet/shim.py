"""The registration shim: `rep3d-nnunet register` copies this file into the installed nnunetv2 package.

nnU-Net finds classes by name: its search imports each module of a folder and asks
``hasattr(module, NAME)``. In nnunetv2 this module answers through ``__getattr__`` for
the classes listed in the JSON record beside it (same name, ``.json``), importing only
the module that defines the requested class. It imports nothing else (stdlib only, not
even rep3d_nnunet) and never raises: a name it does not list, or one whose module is gone
or broken (rep3d_nnunet uninstalled, a user file deleted), is simply not found here, and
nnU-Net's own search goes on as if this file did not exist.
"""
import json as _json
import os as _os

_RECORD = _os.path.splitext(_os.path.abspath(__file__))[0] + ".json"


def _classes(record: str = _RECORD) -> dict:
    try:
        with open(record) as f:
            classes = _json.load(f).get("classes", {})
        return classes if isinstance(classes, dict) else {}
    except Exception:  # no record, or an unreadable one: nothing registered
        return {}


def resolve(name: str, record: str = _RECORD):
    """The class ``name`` listed in ``record``, imported on demand; raises AttributeError if unavailable."""
    entry = _classes(record).get(name)
    if not isinstance(entry, dict) or "module" not in entry:
        raise AttributeError(name)
    try:
        import importlib
        import sys

        folder = entry.get("folder")
        if folder:  # a user trainer folder: its modules are imported by their file name
            if not _os.path.isdir(folder):
                raise ImportError(f"folder {folder} no longer exists")
            if folder not in sys.path:
                sys.path.append(folder)  # appended: a user module never shadows an installed one
        module = importlib.import_module(entry["module"])
        where = _os.path.dirname(_os.path.realpath(getattr(module, "__file__", "") or ""))
        if folder and where != _os.path.realpath(folder):
            raise ImportError(f"the name {entry['module']!r} is taken by {getattr(module, '__file__', module)}")
        return getattr(module, name)
    except Exception as e:  # anything: report, and let nnU-Net's search continue
        import warnings

        warnings.warn(f"rep3d-nnunet: {name} is registered but cannot be imported ({type(e).__name__}: {e}); "
                      "nnU-Net's search continues without it. Reinstall rep3d-nnunet, or run "
                      "`rep3d-nnunet register` (or `unregister`) again.")
        raise AttributeError(name) from None


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return resolve(name)


def __dir__():
    return sorted(_classes())
